#!/usr/bin/env bash
# airlock's main job, end to end, on embedded defaults: the control plane.
#
#   build the host and every first-party plugin; start `airlock server` on a
#   fresh data directory (SQLite, blobs, audit log; no external service);
#   publish the breast-cancer gate, signed; submit the XGBoost model and its
#   good bundle: the gate runs on the server and its verdict is signed; check
#   the attestation offline; approve (someone other than the submitter) and
#   promote it; submit the degraded candidate: the gate refuses it against
#   production, and so does promotion. Then serving: a client's predictions
#   from production; a candidate that passes the gate but has learned to
#   tell gate batches from live traffic is canaried under generated traffic
#   with delayed labels; the analysis sees the breach and the canary is
#   rolled back automatically, with the latency and the rollback time
#   measured; a manual rollback drill; verify the audit log. Each step is
#   printed as it happens.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "building airlock and its plugins"
cold=
if [ ! -x target/debug/airlock ]; then
  cold=1
  echo "   First build: cargo compiles wasmtime and Cranelift, then every guest plugin"
  echo "   for wasm32-wasip2. Measured: about 20 minutes on 2 cores, 6-8 on 8 cores."
  echo "   Cargo's progress follows; the guest plugins build inside the step"
  echo "   \"airlock-tests(build)\", which prints nothing until it is done, so a line"
  echo "   with the elapsed time is printed every minute. Later runs, and the"
  echo "   README's test command, reuse this build."
fi
rustup target add wasm32-wasip2 >/dev/null 2>&1 || true
# One workspace build: the host binary, and (through tests/build.rs) every
# guest crate compiled to a component and copied to target/plugins/ under
# its short name, with the same features the test command uses, so
# `cargo test --workspace` recompiles nothing it shares.
build_started=$SECONDS
heartbeat=
if [ -n "$cold" ]; then
  ( while sleep 60; do echo "   ... still building: $(( (SECONDS - build_started) / 60 )) min so far"; done ) &
  heartbeat=$!
fi
if [ -n "$cold" ]; then cargo build --workspace; else cargo build --workspace --quiet; fi
if [ -n "$heartbeat" ]; then kill "$heartbeat" 2>/dev/null || true; wait "$heartbeat" 2>/dev/null || true; fi
[ -n "$cold" ] && echo "   built in $(( (SECONDS - build_started) / 60 )) min $(( (SECONDS - build_started) % 60 )) s"
airlock="$PWD/target/debug/airlock"
plugins=target/plugins
for p in xgboost linear schema golden performance drift robustness fairness sleeper; do
  [ -f "$plugins/$p.wasm" ] || { echo "demo: $plugins/$p.wasm is missing after the build" >&2; exit 1; }
done
echo "   components in $plugins"

work=$(mktemp -d)
server_pid=
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

step "a gate-signing key for the gate-admin (its public half is the server's trust root)"
"$airlock" key generate "$work/gate.pem"

step "starting the server on a fresh data directory (port chosen by the OS)"
"$airlock" server --data-dir "$work/data" --listen 127.0.0.1:0 --trust-root "$work/gate.pub" \
  >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 600); do
  [ -s "$work/data/server.url" ] && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
  sleep 0.1
done
sed 's/^/   /' "$work/server.log"
export AIRLOCK_SERVER
AIRLOCK_SERVER=$(cat "$work/data/server.url")
admin=(--token-file "$work/data/admin.token")

step "tokens: alice submits, bob approves, carol deploys (each shown once)"
alice=$("$airlock" token create --subject alice --role submitter "${admin[@]}" 2>/dev/null)
bob=$("$airlock" token create --subject bob --role approver "${admin[@]}" 2>/dev/null)
carol=$("$airlock" token create --subject carol --role deployer "${admin[@]}" 2>/dev/null)
"$airlock" token list "${admin[@]}"

step "publishing the breast-cancer gate: validators and datasets uploaded and pinned by digest, signed"
"$airlock" gate publish examples/breast-cancer/gate.toml --name breast-cancer --version 1 \
  --key "$work/gate.pem" --plugin-dir "$plugins" "${admin[@]}"
"$airlock" model create breast-cancer --gate breast-cancer --approvals 1 "${admin[@]}"

step "alice submits the XGBoost plugin and model v1.0.0; the gate runs on the server (expected: PASSED)"
"$airlock" submit plugin "$plugins/xgboost.wasm" --name xgboost --version 1.0.0 --token "$alice"
"$airlock" submit model breast-cancer --version 1.0.0 --plugin xgboost@1.0.0 \
  --bundle examples/breast-cancer/model-v1 --author alice --label team=oncology --wait \
  --token "$alice" | tee "$work/v1.txt"
run1=$(awk '/gate run/ {print $NF; exit}' "$work/v1.txt")

step "the signed attestation of run $run1, checked offline for exactly these bytes"
"$airlock" run attestation "$run1" -o "$work/v1.attestation.json" --token "$alice"
"$airlock" server-keys --out "$work/host-keys" --token "$alice"
"$airlock" attestation verify "$work/v1.attestation.json" --public-key "$work"/host-keys/*.pub \
  --model "$plugins/xgboost.wasm" --bundle examples/breast-cancer/model-v1 --require-pass

step "carol tries to promote v1.0.0 before anyone approved it (expected: refused, naming the approvals)"
if "$airlock" promote breast-cancer 1.0.0 --token "$carol"; then
  echo "demo: promotion without approval should have been refused" >&2; exit 1
fi

step "bob approves, carol promotes v1.0.0 to production"
"$airlock" approve breast-cancer 1.0.0 --comment "metrics reviewed" --token "$bob"
"$airlock" promote breast-cancer 1.0.0 --reason "first release" --token "$carol"

step "alice submits the degraded candidate v2.0.0; judged against v1.0.0 in production (expected: REFUSED)"
set +e
"$airlock" submit model breast-cancer --version 2.0.0 --plugin xgboost@1.0.0 \
  --bundle examples/breast-cancer/model-v2-degraded --author alice --wait --token "$alice"
code=$?
set -e
echo "   exit code: $code"
if [ "$code" -ne 1 ]; then
  echo "demo: expected the degraded candidate to be refused with exit code 1" >&2
  exit 1
fi

step "bob approves v2.0.0 anyway; promotion still refuses it (expected: refused, naming the gate run)"
"$airlock" approve breast-cancer 2.0.0 --token "$bob"
if "$airlock" promote breast-cancer 2.0.0 --token "$carol"; then
  echo "demo: the refused candidate must not be promoted" >&2; exit 1
fi

step "serving: dave's application predicts with a predictor token; erin's labelling service sends the true labels"
dave=$("$airlock" token create --subject dave --role predictor "${admin[@]}" 2>/dev/null)
erin=$("$airlock" token create --subject erin --role labeler "${admin[@]}" 2>/dev/null)
"$airlock" traffic breast-cancer --data examples/breast-cancer/data/eval.csv --label target \
  --seconds 2 --concurrency 2 --feedback-token "$erin" --token "$dave"

step "alice submits v3.0.0: the same trees, in a plugin that flips its answers on batches under 8 rows"
echo "   (a model that learned when it is being evaluated: gates send batches, live traffic sends one row)"
"$airlock" submit plugin "$plugins/sleeper.wasm" --name sleeper --version 1.0.0 --token "$alice"
"$airlock" submit model breast-cancer --version 3.0.0 --plugin sleeper@1.0.0 \
  --bundle examples/breast-cancer/model-v1 --author alice --wait --token "$alice"
"$airlock" approve breast-cancer 3.0.0 --comment "gate passed" --token "$bob"

step "the serving policy: canary 10% -> 50% -> 100%, one-second analysis, accuracy on delayed labels"
cat >"$work/policy.json" <<'JSON'
{ "steps": [10, 50, 100], "interval_s": 1, "failure_limit": 0,
  "thresholds": { "min_requests": 15, "max_error_rate": 0.01, "min_labels": 15, "min_accuracy": 0.9 } }
JSON
"$airlock" serving policy breast-cancer "$work/policy.json" "${admin[@]}"

step "carol starts the canary of v3.0.0; dave's traffic keeps flowing with labels"
"$airlock" canary start breast-cancer 3.0.0 --reason "passed gate and review" --token "$carol"
"$airlock" traffic breast-cancer --data examples/breast-cancer/data/eval.csv --label target \
  --seconds 5 --concurrency 2 --feedback-token "$erin" --token "$dave"

step "what the analysis saw and did (breach -> automatic rollback, timed)"
"$airlock" serving status breast-cancer "${admin[@]}" >"$work/status.txt"
cat "$work/status.txt"
if ! grep -q "rollout: .*aborted" "$work/status.txt"; then
  echo "demo: expected the canary of the sleeper to be aborted:" >&2; cat "$work/status.txt" >&2; exit 1
fi

step "a manual rollback drill: promote, then roll back; each switch is one atomic store of a warm version"
"$airlock" submit model breast-cancer --version 1.1.0 --plugin xgboost@1.0.0 \
  --bundle examples/breast-cancer/model-v1 --author alice --wait --token "$alice" >/dev/null
"$airlock" approve breast-cancer 1.1.0 --token "$bob"
"$airlock" promote breast-cancer 1.1.0 --reason "refresh" --token "$carol"
"$airlock" rollback breast-cancer --reason "drill" --token "$carol"

step "production history and the model"
"$airlock" history breast-cancer --token "$alice"
"$airlock" show breast-cancer --token "$alice"

step "the audit log: every change, hash-chained; verified offline"
"$airlock" audit log --limit 10 "${admin[@]}"
"$airlock" audit verify "$work/data/audit.jsonl"

step "stopping the server"
kill -TERM "$server_pid"
wait "$server_pid" || true
server_pid=
echo
echo "demo: the good model is in production with a signed, verified attestation; the degraded one was refused;"
echo "      the sleeper passed the gate, was caught by the canary analysis on live traffic and rolled back automatically"
