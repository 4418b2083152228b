#!/usr/bin/env bash
# Monitoring on vs off, alternating (docs/benchmarks.md, "Monitoring's cost"):
#   for f in "" --no-monitoring "" --no-monitoring; do DUR=10s bench/serving/monitoring-ab.sh "$f"; done
# One airlock server (release build) set up as run.sh does, then oha on /v2 infer at 1 and 64
# connections; prints req/s and p50/p99. Needs target/bench-tools/bin/oha (run.sh installs it)
# and target/plugins (examples/demo.sh fills it). Not in CI.
# usage: tune.sh "server flags" ; prints oha c1/c64 results
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=target/release/airlock; oha=target/bench-tools/bin/oha
a=$(mktemp -d)
plugins=target/plugins
"$bin" key generate "$a/gate.pem" >/dev/null
"$bin" server --data-dir "$a/data" --listen 127.0.0.1:0 --trust-root "$a/gate.pub" ${1:-} >"$a/server.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf $a' EXIT
for _ in $(seq 1 600); do [ -s "$a/data/server.url" ] && break; sleep 0.1; done
export AIRLOCK_SERVER=$(cat "$a/data/server.url")
adm=(--token-file "$a/data/admin.token")
"$bin" gate publish examples/breast-cancer/gate.toml --name breast-cancer --version 1 --key "$a/gate.pem" --plugin-dir "$plugins" "${adm[@]}" >/dev/null
"$bin" model create breast-cancer --gate breast-cancer --approvals 0 "${adm[@]}" >/dev/null
"$bin" submit plugin "$plugins/xgboost.wasm" --name xgboost --version 1.0.0 "${adm[@]}" >/dev/null
"$bin" submit model breast-cancer --version 1.0.0 --plugin xgboost@1.0.0 --bundle examples/breast-cancer/model-v1 --wait "${adm[@]}" >/dev/null
"$bin" promote breast-cancer 1.0.0 "${adm[@]}" >/dev/null
tok=$("$bin" token create --subject b --role predictor "${adm[@]}" 2>/dev/null)
row=$(sed -n 2p examples/breast-cancer/data/eval.csv | cut -d, -f1-30)
printf '{"inputs": [{"name": "input-0", "shape": [1, 30], "datatype": "FP64", "data": [%s]}]}' "$row" > "$a/v2.json"
url=${AIRLOCK_SERVER%/}/v2/models/breast-cancer/infer
$oha --no-tui -n 2000 -c 8 -m POST -H "Authorization: Bearer $tok" -D "$a/v2.json" "$url" >/dev/null
for c in ${CONNS:-1 64}; do
  $oha --no-tui --output-format json -z ${DUR:-6s} -w -c $c -m POST -H "Authorization: Bearer $tok" -D "$a/v2.json" "$url" > "$a/r.json"
  python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); l=r["latencyPercentiles"]; print(sys.argv[2], "c=%s"%sys.argv[3], "%.0f req/s"%r["summary"]["requestsPerSec"], "p50 %.2f p99 %.2f ms"%(l["p50"]*1e3, l["p99"]*1e3), r.get("statusCodeDistribution"))' "$a/r.json" "${1:-default}" $c
done
