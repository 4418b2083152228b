#!/usr/bin/env python3
"""Open Inference Protocol interop check: NVIDIA's `tritonclient` HTTP client
against an airlock server (issue 8, item 1).

Why it exists: "speaks OIP v2" means real clients work, not that our own
tests agree with our own reading of the spec. This drives the reference
client the way its users do, sending JSON tensors (binary_data=False); the
client sends no content type, so a server that insists on one fails here.

Usage:
    oip_client.py URL MODEL TOKEN CSV_ROW_JSON

URL is `host:port` or `http://host:port` (`https://` switches on TLS);
TOKEN is sent as `Authorization: Bearer TOKEN` on every call; CSV_ROW_JSON
is one row of features as a JSON array of numbers in the model's declared
input order (a JSON object's values are taken in its order).

It checks, in order: is_server_live, is_server_ready, is_model_ready(MODEL),
get_model_metadata(MODEL), one infer of a [1, N] FP64 tensor named
`input-0` asking for the first output the metadata declares, and that
asking for the metadata of an unknown model raises InferenceServerException
carrying the server's error message. On success it prints one JSON object
with every result on stdout and exits 0; on the first failure it prints
`oip_client: <check>: <why>` on stderr and exits 1 (2 for bad arguments).
"""

import json
import math
import sys

UNKNOWN_MODEL = "no-such-model-oip-interop"
INPUT_NAME = "input-0"
# What tritonclient says when the error body is not OIP's {"error": "..."}.
CLIENT_DECODE_FAILURE = "an exception occurred in the client while decoding the response"


class CheckFailed(Exception):
    """One check of the interop run failed; the message names it."""


def fail(check, why):
    """Abort the run at `check`."""
    raise CheckFailed(f"{check}: {why}")


def parse_args(argv):
    """(url, ssl, model, token, row) from the command line, or exit 2."""
    if len(argv) != 5:
        print(
            "usage: oip_client.py URL MODEL TOKEN CSV_ROW_JSON "
            "(e.g. 127.0.0.1:8080 breast-cancer TOKEN '[17.99, 10.38, ...]')",
            file=sys.stderr,
        )
        sys.exit(2)
    url, model, token, row_json = argv[1:]
    ssl = url.startswith("https://")
    for scheme in ("http://", "https://"):
        if url.startswith(scheme):
            url = url[len(scheme):]
    url = url.rstrip("/")
    if not url or "/" in url:
        print(f"oip_client: URL must be host:port, got {argv[1]!r}", file=sys.stderr)
        sys.exit(2)
    try:
        row = json.loads(row_json)
    except json.JSONDecodeError as e:
        print(f"oip_client: CSV_ROW_JSON is not JSON: {e}", file=sys.stderr)
        sys.exit(2)
    if isinstance(row, dict):
        row = list(row.values())
    if (
        not isinstance(row, list)
        or not row
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in row)
    ):
        print(
            f"oip_client: CSV_ROW_JSON must be a non-empty JSON array of numbers, got {row_json[:80]!r}",
            file=sys.stderr,
        )
        sys.exit(2)
    return url, ssl, model, token, [float(v) for v in row]


def run(url, ssl, model, token, row):
    """All checks; the dict printed on success."""
    import numpy as np
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    headers = {"Authorization": f"Bearer {token}"}
    client = httpclient.InferenceServerClient(url=url, ssl=ssl, network_timeout=30.0)
    out = {"url": url, "model": model}

    def call(check, fn, *args, **kwargs):
        try:
            return fn(*args, headers=headers, **kwargs)
        except InferenceServerException as e:
            fail(check, f"server error (HTTP {e.status()}): {e.message()}")
        except Exception as e:  # connection refused, timeouts, bad JSON ...
            fail(check, f"{type(e).__name__}: {e}")

    for check, fn, args in (
        ("is_server_live", client.is_server_live, ()),
        ("is_server_ready", client.is_server_ready, ()),
        ("is_model_ready", client.is_model_ready, (model,)),
    ):
        ok = call(check, fn, *args)
        if ok is not True:
            # tritonclient turns any non-200 answer into False here.
            fail(check, f"returned {ok!r}, expected True (the server answered other than HTTP 200: "
                 "not live or ready, an unknown model, or a refused token)")
        out[check] = ok

    meta = call("get_model_metadata", client.get_model_metadata, model)
    if not isinstance(meta, dict):
        fail("get_model_metadata", f"expected a JSON object, got {meta!r}")
    if meta.get("name") != model:
        fail("get_model_metadata", f"name is {meta.get('name')!r}, expected {model!r}")
    outputs = meta.get("outputs")
    if not isinstance(outputs, list) or not outputs or "name" not in outputs[0]:
        fail("get_model_metadata", f"no named outputs declared: {meta!r}")
    out["metadata"] = {
        "name": meta.get("name"),
        "versions": meta.get("versions"),
        "platform": meta.get("platform"),
        "inputs": meta.get("inputs"),
        "outputs": outputs,
    }
    output_name = outputs[0]["name"]

    tensor = np.array([row], dtype=np.float64)
    inp = httpclient.InferInput(INPUT_NAME, list(tensor.shape), "FP64")
    inp.set_data_from_numpy(tensor, binary_data=False)
    requested = httpclient.InferRequestedOutput(output_name, binary_data=False)
    result = call("infer", client.infer, model, inputs=[inp], outputs=[requested])
    response = result.get_response()
    got = result.as_numpy(output_name)
    if got is None:
        fail("infer", f"no output {output_name!r} in the response: {response!r}")
    values = got.astype(np.float64).ravel().tolist()
    if got.ndim < 1 or got.shape[0] != 1:
        fail("infer", f"output {output_name!r} has shape {list(got.shape)}, expected one row")
    if not values or not all(math.isfinite(v) for v in values):
        fail("infer", f"output {output_name!r} is empty or not finite: {values}")
    declared = next((o for o in response.get("outputs", []) if o.get("name") == output_name), {})
    out["infer"] = {
        "model_name": response.get("model_name"),
        "model_version": response.get("model_version"),
        "id": response.get("id"),
        "output": {
            "name": output_name,
            "datatype": declared.get("datatype"),
            "shape": list(got.shape),
            "data": values,
        },
    }

    try:
        client.get_model_metadata(UNKNOWN_MODEL, headers=headers)
    except InferenceServerException as e:
        message = e.message() or ""
        if not message.strip():
            fail("unknown model", f"InferenceServerException without a message (HTTP {e.status()})")
        if message.startswith(CLIENT_DECODE_FAILURE):
            fail("unknown model", f"the error body is not OIP's {{\"error\": \"...\"}}: {message}")
        out["unknown_model_error"] = {"status": e.status(), "message": message}
    except Exception as e:
        fail("unknown model", f"expected InferenceServerException, got {type(e).__name__}: {e}")
    else:
        fail("unknown model", f"metadata of {UNKNOWN_MODEL!r} succeeded; expected an error")
    client.close()
    return out


def main():
    """Entry point: exit 0 with the results as JSON, 1 naming the failed check."""
    url, ssl, model, token, row = parse_args(sys.argv)
    try:
        result = run(url, ssl, model, token, row)
    except CheckFailed as e:
        print(f"oip_client: {e}", file=sys.stderr)
        sys.exit(1)
    except ImportError as e:
        print(f"oip_client: tritonclient is not installed ({e}); run tests/interop/setup-venv.sh", file=sys.stderr)
        sys.exit(1)
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main()
