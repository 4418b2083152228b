#!/usr/bin/env bash
# Creates or updates the Python venv that tests/interop/oip_client.py runs
# in, with exactly the pins of tests/interop/requirements.txt, and prints
# the venv's python. Usage: tests/interop/setup-venv.sh [DIR]
# (default: $CARGO_TARGET_DIR/oip-venv if CARGO_TARGET_DIR is absolute, else
# target/oip-venv at the workspace root).
#
# Like the model_signing venv of host/attest/tests/reference_cli.rs: a stamp
# file in the venv records the sha256 of the requirements it was built from,
# so a later run with unchanged pins returns at once without calling pip; a
# changed pin rebuilds the venv from scratch; a lock file (flock) keeps
# concurrent test processes from installing twice. Needs python3 with venv
# and pip, and network access to PyPI the first time.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
req=$here/requirements.txt
if [ $# -ge 1 ]; then
  venv=$1
elif [ -n "${CARGO_TARGET_DIR:-}" ] && [ "${CARGO_TARGET_DIR#/}" != "$CARGO_TARGET_DIR" ]; then
  venv=$CARGO_TARGET_DIR/oip-venv
else
  venv=$root/target/oip-venv
fi
mkdir -p "$(dirname "$venv")"
venv=$(cd "$(dirname "$venv")" && pwd)/$(basename "$venv")

want="requirements sha256 $(sha256sum "$req" | cut -d' ' -f1)"
stamp=$venv/airlock-stamp
ready() {
  [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]
}

if ! ready; then
  exec 9>"$venv.lock"
  flock 9
  # Another process may have finished the install while this one waited.
  if ! ready; then
    hint="the OIP interop check needs python3 with venv and pip, and network access to PyPI on first run"
    rm -rf "$venv"
    python3 -m venv "$venv" || {
      echo "setup-venv.sh: creating a venv at $venv failed ($hint)" >&2
      exit 1
    }
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --timeout 60 \
      -r "$req" >&2 || {
      echo "setup-venv.sh: pip install -r $req into $venv failed ($hint)" >&2
      exit 1
    }
    "$venv/bin/python" -c "import tritonclient.http" || {
      echo "setup-venv.sh: tritonclient.http does not import in $venv" >&2
      exit 1
    }
    echo "$want" >"$stamp"
  fi
  exec 9>&-
fi
echo "$venv/bin/python"
