"""The benchmark's floor: predict_proba behind a raw ASGI callable on uvicorn, no framework.

It reads the JSON body, calls ``predict_proba`` and writes JSON, nothing else: no routing
beyond one path check, no validation, metrics, logging or drift. Same model loading, JSON
library, uvicorn settings and heap freeze as the other servers, so it is the least any Python
server on this stack can spend per request.
Run: python raw_asgi_server.py MODEL_URI PORT
"""

from __future__ import annotations

import gc
import sys
from typing import Any

import mlflow.sklearn
import numpy as np
import orjson
import uvicorn

Scope = dict[str, Any]


def build(model_uri: str) -> Any:
    estimator = mlflow.sklearn.load_model(model_uri)

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        assert scope["type"] == "http"  # lifespan is off
        if scope["path"] == "/invocations" and scope["method"] == "POST":
            body, more = b"", True
            while more:
                message = await receive()
                body += message.get("body", b"")
                more = message.get("more_body", False)
            rows = np.asarray(orjson.loads(body)["dataframe_split"]["data"], dtype=np.float64)
            status, out = 200, orjson.dumps(
                {"predictions": estimator.predict_proba(rows)}, option=orjson.OPT_SERIALIZE_NUMPY
            )
        elif scope["path"] == "/ping":
            status, out = 200, b"ok"
        else:
            status, out = 404, b""
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(out)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": out})

    return app


if __name__ == "__main__":
    app = build(sys.argv[1])
    gc.collect()
    gc.freeze()
    uvicorn.run(
        app, host="127.0.0.1", port=int(sys.argv[2]), workers=1, access_log=False, log_level="warning", lifespan="off"
    )
