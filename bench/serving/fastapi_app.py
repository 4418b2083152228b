"""The plain-FastAPI peer of airlock's serving benchmark.

Why it exists: it is the floor a hand-written Python service reaches for the
same model, to put airlock's and MLServer's numbers in context. It loads the
breast-cancer XGBoost JSON model once with `xgboost.Booster` and answers
`POST /predict` with `{"rows": [[30 floats], ...]}` (features in the model's
declared order) by `{"predictions": [[p0, p1], ...]}` (class probabilities,
like airlock's `/v1/models/{name}/predict`).

Run by bench/serving/run.sh as
    AIRLOCK_BENCH_MODEL=path/to/model.json uvicorn fastapi_app:app --workers N
with OMP_NUM_THREADS=1.
"""

import os

import numpy as np
import xgboost as xgb
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

MODEL_PATH = os.environ["AIRLOCK_BENCH_MODEL"]

booster = xgb.Booster()
booster.load_model(MODEL_PATH)
# One thread per prediction: one row gains nothing from more, and the
# workers already use both cores.
booster.set_param({"nthread": 1})
N_FEATURES = booster.num_features()

app = FastAPI(title="xgboost-fastapi-peer")


class PredictRequest(BaseModel):
    """Rows of features in the model's declared order."""

    rows: list[list[float]]


@app.get("/health")
async def health() -> dict:
    """Liveness probe used by run.sh to wait for start-up."""
    return {"status": "ok"}


@app.post("/predict")
async def predict(req: PredictRequest) -> dict:
    """Class probabilities `[1 - p, p]` for every row."""
    if not req.rows:
        raise HTTPException(status_code=400, detail="rows: at least one row is needed")
    bad = [i for i, r in enumerate(req.rows) if len(r) != N_FEATURES]
    if bad:
        raise HTTPException(
            status_code=400,
            detail=f"row {bad[0]}: expected {N_FEATURES} features, got {len(req.rows[bad[0]])}",
        )
    x = np.asarray(req.rows, dtype=np.float64)
    # inplace_predict skips building a DMatrix: the cheapest path for small batches.
    p = booster.inplace_predict(x)
    return {"predictions": [[1.0 - float(v), float(v)] for v in p]}
