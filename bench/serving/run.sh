#!/usr/bin/env bash
# Peer serving benchmark (issue 8, item 7): HTTP predict throughput and
# p50/p99 latency for the breast-cancer XGBoost model, 1-row requests, at 1
# and 64 concurrent connections, for airlock, MLServer (xgboost runtime) and a
# plain FastAPI service calling xgboost, one after the other on this machine,
# with one load generator (oha). Not run in CI. See bench/serving/README.md.
#
# Environment:
#   BENCH_DURATION   oha run length per measurement (default 10s)
#   BENCH_PARTS      which servers to run (default "airlock mlserver fastapi")
#   AIRLOCK_BIN      airlock binary (default target/release/airlock if
#                    present, else target/debug/airlock)
#   AIRLOCK_PLUGIN_DIR  directory with xgboost.wasm and the gate's validators
#                    (default target/plugins, else the components that
#                    tests/build.rs built under target/wasm-plugins)
#   BENCH_OUT        where raw oha JSON and the table go
#                    (default target/bench-serving)
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD

duration=${BENCH_DURATION:-10s}
parts=${BENCH_PARTS:-"airlock mlserver fastapi"}
out=${BENCH_OUT:-$root/target/bench-serving}
venv=$root/target/bench-serving-venv
tools=$root/target/bench-tools
oha_version=1.16.0
model_json=$root/examples/breast-cancer/model-v1/model.json
eval_csv=$root/examples/breast-cancer/data/eval.csv
mkdir -p "$out"

log() { printf '== %s\n' "$*" >&2; }

# --- tools -----------------------------------------------------------------

setup_venv() {
  local req=$root/bench/serving/requirements.txt stamp=$venv/.requirements.sha256 want
  want=$(sha256sum "$req" | cut -d' ' -f1)
  # The entry points must still run: a venv's scripts name the path it was
  # made at and the Python it was made from, and break when either moves.
  if "$venv/bin/uvicorn" --version >/dev/null 2>&1 &&
    "$venv/bin/mlserver" --version >/dev/null 2>&1 &&
    [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    return
  fi
  rm -rf "$venv"
  log "creating the Python venv $venv (pinned: bench/serving/requirements.txt)"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req"
  echo "$want" >"$stamp"
}

setup_oha() {
  if [ -x "$tools/bin/oha" ] && "$tools/bin/oha" --version | grep -q " $oha_version"; then
    return
  fi
  log "installing oha $oha_version into $tools (a few minutes)"
  cargo install oha --locked --version "$oha_version" --root "$tools" --quiet
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_http URL PID: until URL answers 2xx, or the server died, or 120 s.
wait_http() {
  local url=$1 pid=$2
  for _ in $(seq 1 1200); do
    curl -sf -o /dev/null "$url" && return 0
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

server_pid=
stop_server() {
  if [ -n "$server_pid" ]; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=
  fi
}
work=$(mktemp -d)
cleanup() {
  stop_server
  rm -rf "$work"
}
trap cleanup EXIT

# --- request bodies (row 1 of the evaluation set) ---------------------------

row=$(sed -n 2p "$eval_csv" | cut -d, -f1-30)
header=$(sed -n 1p "$eval_csv" | cut -d, -f1-30)
printf '{"rows": [[%s]]}' "$row" >"$work/rows.json"
python3 - "$header" "$row" >"$work/named.json" <<'PY'
import json, sys
names, values = sys.argv[1].split(","), [float(v) for v in sys.argv[2].split(",")]
print(json.dumps({"rows": [dict(zip(names, values))]}))
PY
printf '{"inputs": [{"name": "input-0", "shape": [1, 30], "datatype": "FP64", "data": [%s]}]}' \
  "$row" >"$work/v2.json"
printf '{"inputs": [{"name": "input-0", "shape": [1, 30], "datatype": "FP64", "data": [%s]}], "outputs": [{"name": "predict"}]}' \
  "$row" >"$work/mlserver.json"

# --- measuring ---------------------------------------------------------------

results=$out/results.tsv
: >"$results"

# bench SERVER CONFIG URL BODY [HEADER...]: warm up, then one oha run per
# connection count; appends a row per run to $results. BODY "-" sends GETs
# without a body (the HTTP floor).
bench() {
  local server=$1 config=$2 url=$3 body=$4
  shift 4
  local headers=(-H "content-type: application/json")
  for h in "$@"; do headers+=(-H "$h"); done
  local -a request=(-m POST "${headers[@]}" -D "$body")
  [ "$body" = - ] && request=(-m GET "${headers[@]}")
  local slug
  slug=$(printf '%s-%s' "$server" "$config" | tr -c 'a-zA-Z0-9=-' '_')
  log "$server ($config): warm-up"
  "$tools/bin/oha" --no-tui -n 500 -c 8 "${request[@]}" "$url" >/dev/null
  for c in 1 64; do
    log "$server ($config): $duration at $c connection(s)"
    "$tools/bin/oha" --no-tui --output-format json -z "$duration" -w -c "$c" \
      "${request[@]}" "$url" >"$out/$slug-c$c.json"
    python3 - "$out/$slug-c$c.json" "$server" "$config" "$c" >>"$results" <<'PY'
import json, sys
path, server, config, conns = sys.argv[1:]
r = json.load(open(path))
codes = r.get("statusCodeDistribution", {})
ok = sum(n for code, n in codes.items() if code.startswith("2"))
errors = sum(n for code, n in codes.items() if not code.startswith("2"))
errors += sum(r.get("errorDistribution", {}).values())
lat = r["latencyPercentiles"]
ms = lambda v: "-" if v is None else f"{v * 1000:.2f}"
rps = r["summary"]["requestsPerSec"]
print(f"{server}\t{config}\t{conns}\t{rps:.0f}\t{ms(lat.get('p50'))}\t{ms(lat.get('p99'))}\t{errors} of {ok + errors}")
PY
  done
}

# skip SERVER CONFIG WHY: a row saying the server was not measured.
skip() {
  printf '%s\t%s\t-\t-\t-\t-\tnot run: %s\n' "$1" "$2" "$3" >>"$results"
  log "$1 ($2): not run: $3"
}

# --- the peers ----------------------------------------------------------------

run_fastapi() {
  local workers=$1 port
  port=$(free_port)
  (cd "$root/bench/serving" &&
    OMP_NUM_THREADS=1 AIRLOCK_BENCH_MODEL=$model_json exec "$venv/bin/uvicorn" fastapi_app:app \
      --host 127.0.0.1 --port "$port" --workers "$workers" --log-level warning --no-access-log \
      --loop uvloop --http httptools) >"$work/fastapi.log" 2>&1 &
  server_pid=$!
  if ! wait_http "http://127.0.0.1:$port/health" "$server_pid"; then
    cat "$work/fastapi.log" >&2
    stop_server
    skip fastapi "workers=$workers" "did not start"
    return
  fi
  bench fastapi "workers=$workers" "http://127.0.0.1:$port/predict" "$work/rows.json"
  stop_server
}

run_mlserver() {
  local pw=$1 dir=$work/mlserver http grpc metrics
  http=$(free_port) grpc=$(free_port) metrics=$(free_port)
  rm -rf "$dir" && mkdir -p "$dir/breast-cancer"
  cat >"$dir/settings.json" <<JSON
{"host": "127.0.0.1", "http_port": $http, "grpc_port": $grpc, "metrics_port": $metrics,
 "parallel_workers": $pw, "debug": false}
JSON
  cat >"$dir/breast-cancer/model-settings.json" <<JSON
{"name": "breast-cancer", "implementation": "mlserver_xgboost.XGBoostModel",
 "parameters": {"uri": "$model_json", "version": "v1"}}
JSON
  OMP_NUM_THREADS=1 "$venv/bin/mlserver" start "$dir" >"$work/mlserver.log" 2>&1 &
  server_pid=$!
  if ! wait_http "http://127.0.0.1:$http/v2/models/breast-cancer/ready" "$server_pid"; then
    cat "$work/mlserver.log" >&2
    stop_server
    skip mlserver "parallel_workers=$pw" "did not start"
    return
  fi
  bench mlserver "parallel_workers=$pw" \
    "http://127.0.0.1:$http/v2/models/breast-cancer/infer" "$work/mlserver.json"
  stop_server
}

# --- airlock ---------------------------------------------------------------------

airlock_plugins() {
  local dir=${AIRLOCK_PLUGIN_DIR:-$root/target/plugins}
  local built=$root/target/wasm-plugins/wasm32-wasip2/plugin
  if [ -f "$dir/xgboost.wasm" ]; then
    echo "$dir"
    return
  fi
  [ -f "$built/airlock_model_xgboost.wasm" ] || return 1
  dir=$work/plugins
  mkdir -p "$dir"
  cp "$built/airlock_model_xgboost.wasm" "$dir/xgboost.wasm"
  for p in schema golden performance drift robustness fairness; do
    cp "$built/airlock_validator_$p.wasm" "$dir/$p.wasm"
  done
  echo "$dir"
}

# run_airlock on|off: with monitoring (sketches, label book, histograms)
# on, or with --no-monitoring, to measure what monitoring costs.
# rollback_drill BIN URL DIR PREDICT_URL AUTH: a second production version,
# then 100 rollbacks alternating between the two while oha keeps 16
# connections busy; every answer must be a 200. Prints the switch times.
rollback_drill() {
  local bin=$1 url=$2 a=$3 v1=$4 auth=$5
  local -a admin=(--token-file "$a/data/admin.token")
  (
    set -e
    export AIRLOCK_SERVER=$url
    "$bin" submit model breast-cancer --version 1.1.0 --plugin xgboost@1.0.0 \
      --bundle examples/breast-cancer/model-v1 --wait "${admin[@]}"
    bob=$("$bin" token create --subject bob2 --role approver "${admin[@]}" 2>/dev/null)
    "$bin" approve breast-cancer 1.1.0 --token "$bob"
    "$bin" promote breast-cancer 1.1.0 --reason drill "${admin[@]}"
  ) >>"$a/setup.log" 2>&1 || { log "rollback drill: setting up 1.1.0 failed"; return; }
  log "rollback drill: 100 switches under 16 connections of load"
  "$tools/bin/oha" --no-tui --output-format json -z 20s -w -c 16 -m POST \
    -H "content-type: application/json" -H "$auth" -D "$work/rows.json" "$v1" >"$out/rollback-drill-oha.json" &
  local oha_pid=$!
  sleep 3
  : >"$out/rollback-drill-switch-ns.txt"
  for k in $(seq 1 100); do
    local target=1.0.0
    [ $((k % 2)) -eq 0 ] && target=1.1.0
    AIRLOCK_SERVER=$url "$bin" rollback breast-cancer --version "$target" --reason drill --json \
      "${admin[@]}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["switch_ns"])' \
      >>"$out/rollback-drill-switch-ns.txt"
  done
  wait "$oha_pid"
  python3 - "$out/rollback-drill-oha.json" "$out/rollback-drill-switch-ns.txt" <<'PY' | tee -a "$out/rollback-drill.md" >&2
import json, sys
r = json.load(open(sys.argv[1]))
ns = sorted(int(x) for x in open(sys.argv[2]).read().split())
codes = r.get("statusCodeDistribution", {})
errors = sum(r.get("errorDistribution", {}).values())
print(f"rollback drill: {len(ns)} switches during {r['summary']['total']:.0f} s of load at 16 connections; "
      f"answers by status {codes}, transport errors {errors}; "
      f"switch median {ns[len(ns)//2]} ns, p90 {ns[int(len(ns)*0.9)]} ns, max {ns[-1]} ns")
PY
}

run_airlock() {
  local monitoring=${1:-on}
  local bin=${AIRLOCK_BIN:-}
  if [ -z "$bin" ]; then
    bin=$root/target/release/airlock
    [ -x "$bin" ] || bin=$root/target/debug/airlock
  fi
  local config
  config="$(basename "$(dirname "$bin")"), monitoring $monitoring"
  local -a server_flags=()
  [ "$monitoring" = off ] && server_flags+=(--no-monitoring)
  if [ ! -x "$bin" ]; then
    skip airlock "$config" "no airlock binary at $bin (cargo build --release -p airlock-cli)"
    return
  fi
  local plugins
  if ! plugins=$(airlock_plugins); then
    skip airlock "$config" "no plugin components (run examples/demo.sh or cargo build --workspace)"
    return
  fi
  local a=$work/airlock-$monitoring
  mkdir -p "$a"
  log "airlock ($config): standing up the server as examples/demo.sh does ($bin)"
  "$bin" key generate "$a/gate.pem" >/dev/null
  "$bin" server --data-dir "$a/data" --listen 127.0.0.1:0 --trust-root "$a/gate.pub" \
    "${server_flags[@]}" >"$a/server.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 1 600); do
    [ -s "$a/data/server.url" ] && break
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  if [ ! -s "$a/data/server.url" ]; then
    cat "$a/server.log" >&2
    stop_server
    skip airlock "$config" "the server did not start"
    return
  fi
  local url
  url=$(cat "$a/data/server.url")
  url=${url%/}
  local -a admin=(--token-file "$a/data/admin.token")
  (
    set -e
    export AIRLOCK_SERVER=$url
    alice=$("$bin" token create --subject alice --role submitter "${admin[@]}" 2>/dev/null)
    bob=$("$bin" token create --subject bob --role approver "${admin[@]}" 2>/dev/null)
    carol=$("$bin" token create --subject carol --role deployer "${admin[@]}" 2>/dev/null)
    "$bin" gate publish examples/breast-cancer/gate.toml --name breast-cancer --version 1 \
      --key "$a/gate.pem" --plugin-dir "$plugins" "${admin[@]}"
    "$bin" model create breast-cancer --gate breast-cancer --approvals 1 "${admin[@]}"
    "$bin" submit plugin "$plugins/xgboost.wasm" --name xgboost --version 1.0.0 --token "$alice"
    "$bin" submit model breast-cancer --version 1.0.0 --plugin xgboost@1.0.0 \
      --bundle examples/breast-cancer/model-v1 --author alice --wait --token "$alice"
    "$bin" approve breast-cancer 1.0.0 --comment "bench" --token "$bob"
    "$bin" promote breast-cancer 1.0.0 --reason "bench" --token "$carol"
  ) >"$a/setup.log" 2>&1 || {
    cat "$a/setup.log" >&2
    stop_server
    skip airlock "$config" "setting up the model failed (see above)"
    return
  }
  local token
  if ! token=$(AIRLOCK_SERVER=$url "$bin" token create --subject bench --role predictor \
    "${admin[@]}" 2>"$a/token.err"); then
    log "airlock: no predictor role ($(head -n1 "$a/token.err")); using the admin token"
    token=$(cat "$a/data/admin.token")
  fi
  cp "$a/setup.log" "$out/airlock-setup.log"
  local v1=$url/v1/models/breast-cancer/predict v2=$url/v2/models/breast-cancer/infer
  local auth="Authorization: Bearer $token" code
  code=$(curl -s -o "$a/probe.json" -w '%{http_code}' -X POST -H "$auth" \
    -H 'content-type: application/json' --data-binary "@$work/rows.json" "$v1" || true)
  if [ "$code" = 200 ]; then
    log "airlock /v1 predict answers: $(head -c 300 "$a/probe.json")"
    bench airlock "$config, /v1 predict (arrays)" "$v1" "$work/rows.json" "$auth"
    [ "$monitoring" = off ] || bench airlock "$config, /v1 predict (named)" "$v1" "$work/named.json" "$auth"
  else
    skip airlock "$config, /v1 predict" "POST $v1 answered HTTP $code: $(head -c 200 "$a/probe.json")"
  fi
  code=$(curl -s -o "$a/probe.json" -w '%{http_code}' -X POST -H "$auth" \
    -H 'content-type: application/json' --data-binary "@$work/v2.json" "$v2" || true)
  if [ "$monitoring" = off ]; then
    :
  elif [ "$code" = 200 ]; then
    log "airlock /v2 infer answers: $(head -c 300 "$a/probe.json")"
    bench airlock "$config, /v2 infer" "$v2" "$work/v2.json" "$auth"
  else
    skip airlock "$config, /v2 infer" "POST $v2 answered HTTP $code: $(head -c 200 "$a/probe.json")"
  fi
  # The floor under every row: the same server and HTTP stack answering a
  # request that needs no token, no JSON and no model call.
  [ "$monitoring" = on ] && bench airlock "$config, floor: GET /v2/health/live" "$url/v2/health/live" -
  [ "$monitoring" = on ] && rollback_drill "$bin" "$url" "$a" "$v1" "$auth"
  stop_server
  cp "$a/server.log" "$out/airlock-server-monitoring-$monitoring.log"
}

# --- main ---------------------------------------------------------------------

setup_oha
case " $parts " in *" mlserver "* | *" fastapi "*) setup_venv ;; esac
for part in $parts; do
  case $part in
    airlock) run_airlock on; run_airlock off ;;
    mlserver) for pw in 0 1 2; do run_mlserver "$pw"; done ;;
    fastapi) for w in 1 2; do run_fastapi "$w"; done ;;
    *) echo "run.sh: unknown part '$part' in BENCH_PARTS (airlock, mlserver, fastapi)" >&2; exit 2 ;;
  esac
done

{
  echo "1-row requests, $duration per row, oha $oha_version, $(nproc) CPUs ($(uname -m)), $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "| server | config | connections | req/s | p50 ms | p99 ms | errors |"
  echo "|---|---|---:|---:|---:|---:|---|"
  while IFS=$'\t' read -r s cfg c rps p50 p99 err; do
    echo "| $s | $cfg | $c | $rps | $p50 | $p99 | $err |"
  done <"$results"
} | tee "$out/results.md"
