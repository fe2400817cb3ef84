"""``POST /invocations``: MLflow's scoring protocol, so clients of ``mlflow models serve`` can
switch to this server unchanged.

The four MLflow input formats are only reshaped here, into the rows or records that
validation.py checks against the signature exactly as for /predict; the answer is MLflow's
``{"predictions": [...]}``. Errors keep this server's shape and codes (422 naming the field,
415 for a body that is not JSON, 413, 401, 503) rather than MLflow's 400s.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from starlette.responses import Response
from starlette.types import Receive, Scope

from .errors import InvalidInput
from .runtime import Runtime
from .schemas import ErrorResponse, InvocationsRequest, InvocationsResponse, request_body
from .signature import InputSpec
from .transport import JSON, ApiKeyCheck, JsonHandler, dumps, read_body, require_json
from .validation import parse_json, rows_to_matrix

PATH = "/invocations"
INPUT_FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
_EXPECTED = ", ".join(INPUT_FORMATS)
_BODY_KEYS = frozenset({*INPUT_FORMATS, "params"})
_SPLIT_KEYS = frozenset({"columns", "data", "index"})
_ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorResponse} for code in (401, 413, 415, 422, 503)}


def rows_from_invocations_body(payload: Any, spec: InputSpec) -> np.ndarray:
    """Exactly one input format (plus optional ``params``) -> a validated float64 matrix."""
    if not isinstance(payload, dict):
        raise InvalidInput(f"body must be a JSON object with one of {_EXPECTED}", field="body")
    unknown = [] if payload.keys() <= _BODY_KEYS else [key for key in payload if key not in _BODY_KEYS]
    if unknown:
        raise InvalidInput(f"unknown field {unknown[0]!r}; expected one of {_EXPECTED} (and params)", field=unknown[0])
    given = [key for key in INPUT_FORMATS if key in payload]
    if len(given) != 1:
        found = f"got {', '.join(given)}" if given else "got none"
        raise InvalidInput(f"body needs exactly one of {_EXPECTED} ({found})", field="body")
    params = payload.get("params")
    if params is not None and not isinstance(params, dict):
        raise InvalidInput("params must be an object", field="params")
    key = given[0]
    value = payload[key]
    if key == "dataframe_split":
        return _from_split(value, spec)
    if key == "inputs" and isinstance(value, dict):
        return _rows(_columns_to_records(value, spec), spec, key)
    return _rows(value, spec, key)


def _rows(rows: Any, spec: InputSpec, key: str) -> np.ndarray:
    if not isinstance(rows, list):
        raise InvalidInput(f"{key} must be a list of rows", field=key)
    if not rows:
        raise InvalidInput(f"{key} is empty; send at least one row", field=key)
    return rows_to_matrix(rows, spec, key)


def _from_split(split: Any, spec: InputSpec) -> np.ndarray:
    """pandas ``orient="split"``; rows are re-keyed by ``columns`` unless those already are the
    signature's order (the common case, which keeps the fast path)."""
    where = "dataframe_split"
    if not isinstance(split, dict):
        raise InvalidInput(f"{where} must be an object with columns and data", field=where)
    extra = [] if split.keys() <= _SPLIT_KEYS else [key for key in split if key not in _SPLIT_KEYS]
    if extra:
        raise InvalidInput(f"{where} has unknown field {extra[0]!r}; expected columns, data, index", field=where)
    data, columns, index = split.get("data"), split.get("columns"), split.get("index")
    if not isinstance(data, list):
        raise InvalidInput(f"{where}.data must be a list of rows", field=f"{where}.data")
    if index is not None and (not isinstance(index, list) or len(index) != len(data)):
        raise InvalidInput(f"{where}.index must be a list with one label per row", field=f"{where}.index")
    key = "dataframe_split.data"
    if columns is None or spec.names is None or columns == list(spec.names):
        return _rows(data, spec, key)
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise InvalidInput(f"{where}.columns must be a list of names", field=f"{where}.columns")
    if len(set(columns)) != len(columns):
        raise InvalidInput(f"{where}.columns has duplicate names", field=f"{where}.columns")
    records = []
    for i, row in enumerate(data):
        if not isinstance(row, list) or len(row) != len(columns):
            where_row = f"{key}[{i}]"
            raise InvalidInput(f"{where_row} must be a list of {len(columns)} values, one per column", field=where_row)
        records.append(dict(zip(columns, row, strict=True)))
    return _rows(records, spec, key)


def _columns_to_records(columns: dict[str, Any], spec: InputSpec) -> list[dict[str, Any]]:
    """TF-serving's columnar ``inputs``: ``{"feature": [values...], ...}``, one list per feature."""
    if spec.names is None:
        raise InvalidInput("this model's signature has no feature names; send inputs as a list of rows", field="inputs")
    lengths = set()
    for name, values in columns.items():
        if not isinstance(values, list):
            raise InvalidInput(f"inputs.{name} must be a list with one value per row", field=f"inputs.{name}")
        lengths.add(len(values))
    if len(lengths) > 1:
        raise InvalidInput("the columns of inputs have different lengths", field="inputs")
    n_rows = lengths.pop() if lengths else 0
    return [{name: values[i] for name, values in columns.items()} for i in range(n_rows)]


def invocations_handler(runtime: Runtime, auth: ApiKeyCheck, max_body: int) -> JsonHandler:
    async def invocations(scope: Scope, receive: Receive) -> bytes:
        auth(scope)
        require_json(scope)
        model = runtime.require_model()
        rows = rows_from_invocations_body(parse_json(await read_body(scope, receive, max_body)), model.inputs)
        return dumps({"predictions": (await runtime.predict(model, rows)).predictions})

    return invocations


def build_invocations_router(invocations: JsonHandler) -> APIRouter:
    """The OpenAPI description of /invocations; the raw route registered before it serves requests."""
    router = APIRouter(tags=["inference"])

    @router.post(
        PATH,
        summary="Predict in MLflow's scoring protocol (as `mlflow models serve`)",
        response_model=InvocationsResponse,
        responses=_ERRORS,
        openapi_extra=request_body(InvocationsRequest),
    )
    async def documented_invocations(request: Request) -> Response:
        return Response(await invocations(request.scope, request.receive), media_type=JSON)

    return router
