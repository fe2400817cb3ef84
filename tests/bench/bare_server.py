"""The least a FastAPI endpoint can do to serve predict_proba, on the benchmark's request
(``POST /invocations`` with MLflow's ``dataframe_split``).

No validation, metrics, logging or drift; same model loading, JSON library and uvicorn
settings as modelyard serving, so the gap between the two is what modelyard's features cost
(raw_asgi_server.py is the same without FastAPI).
Run: python bare_server.py MODEL_URI PORT
"""

from __future__ import annotations

import gc
import sys

import mlflow.sklearn
import numpy as np
import orjson
import uvicorn
from fastapi import FastAPI, Request
from starlette.responses import Response


def build(model_uri: str) -> FastAPI:
    estimator = mlflow.sklearn.load_model(model_uri)
    app = FastAPI()

    @app.post("/invocations")
    async def predict(request: Request) -> Response:
        rows = np.asarray(orjson.loads(await request.body())["dataframe_split"]["data"], dtype=np.float64)
        proba = estimator.predict_proba(rows)
        return Response(
            orjson.dumps({"probabilities": proba}, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json"
        )

    @app.get("/ping")
    async def ping() -> Response:
        return Response(b"ok")

    return app


if __name__ == "__main__":
    app = build(sys.argv[1])
    # Same process tuning as modelyard (its runtime freezes the heap after loading), so the
    # ceiling measures only what the endpoint does, not garbage-collection pauses.
    gc.collect()
    gc.freeze()
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), workers=1, access_log=False, log_level="warning")
