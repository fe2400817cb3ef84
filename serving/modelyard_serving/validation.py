"""Turn request JSON into a validated float64 matrix, with errors that name the offending field.

This is deliberately hand-written rather than a pydantic model: validating nested lists of
numbers through pydantic costs more than the prediction itself, and the checks that matter
(feature count, names, kinds, NaN) depend on the model's signature, known only at load time.
The common case (all-float signature, well-formed rows) is one type scan plus one np.array.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import orjson

from .errors import InvalidInput
from .signature import InputSpec

_NUMBER = (int, float)
# Matrices up to this many values are checked for NaN/inf in Python rather than numpy.
_SMALL = 16


def parse_json(body: bytes) -> Any:
    if not body:
        raise InvalidInput("request body is empty; send a JSON object", field="body")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        # orjson is strict JSON; many clients (Python's json, pandas) write NaN/Infinity,
        # which the stdlib still parses, so that signature validation can name the field.
        try:
            return json.loads(body)
        except (ValueError, RecursionError):
            raise InvalidInput(f"request body is not valid JSON: {exc}", field="body") from None


def rows_from_predict_body(payload: Any, spec: InputSpec) -> np.ndarray:
    """``{"instances": [[...], ...]}`` (or rows as objects) or ``{"inputs": [{...}, ...]}``."""
    if not isinstance(payload, dict):
        raise InvalidInput('body must be a JSON object with "instances" or "inputs"', field="body")
    if "instances" in payload:
        key = "instances"
    elif "inputs" in payload:
        key = "inputs"
    else:
        raise InvalidInput('body needs an "instances" or an "inputs" list', field="body")
    rows = payload[key]
    if not isinstance(rows, list):
        raise InvalidInput(f"{key} must be a list", field=key)
    if not rows:
        raise InvalidInput(f"{key} is empty; send at least one row", field=key)
    return rows_to_matrix(rows, spec, key)


def rows_to_matrix(rows: list[Any], spec: InputSpec, key: str) -> np.ndarray:
    n = spec.n_features
    if spec.all_float:
        for row in rows:
            if type(row) is not list or len(row) != n:
                break
            for value in row:
                if type(value) is not float and type(value) is not int:
                    break
            else:
                continue
            break
        else:
            return check_finite(_to_array(rows, key), spec, key)
    # Slow path: records, non-float columns, or something is wrong and needs a precise error.
    checked = [_check_row(row, i, spec, key) for i, row in enumerate(rows)]
    return check_finite(_to_array(checked, key), spec, key)


def _to_array(rows: list[list[Any]], key: str) -> np.ndarray:
    try:
        return np.array(rows, dtype=np.float64)
    except OverflowError:
        raise InvalidInput(f"{key} has an integer too large for float64", field=key) from None


def _check_row(row: Any, i: int, spec: InputSpec, key: str) -> list[Any]:
    where = f"{key}[{i}]"
    if isinstance(row, dict):
        row = _record_to_row(row, spec, where)
    elif not isinstance(row, list):
        raise InvalidInput(
            f"{where} must be a list of {spec.n_features} values or an object keyed by feature",
            field=where,
        )
    elif len(row) != spec.n_features:
        names = f" ({', '.join(spec.names)})" if spec.names else ""
        raise InvalidInput(
            f"{where} has {len(row)} values; the model expects {spec.n_features}{names}",
            field=where,
        )
    return [_check_value(v, j, spec, where) for j, v in enumerate(row)]


def _record_to_row(record: dict[str, Any], spec: InputSpec, where: str) -> list[Any]:
    if spec.names is None:
        raise InvalidInput("this model's signature has no feature names; send rows as lists", field=where)
    unknown = [k for k in record if k not in spec.index]
    if unknown:
        raise InvalidInput(
            f"{where} has unknown feature(s) {unknown}; expected {list(spec.names)}",
            field=f"{where}.{unknown[0]}",
        )
    row: list[Any] = []
    for name, required in zip(spec.names, spec.required, strict=True):
        if name in record:
            row.append(record[name])
        elif required:
            raise InvalidInput(f"{where} is missing feature {name!r}", field=f"{where}.{name}")
        else:
            row.append(None)
    return row


def _check_value(value: Any, j: int, spec: InputSpec, where: str) -> float:
    kind = spec.kinds[j]
    field = f"{where}.{spec.label(j)}" if spec.names else f"{where}[{j}]"
    if value is None:
        if spec.allow_nan and kind == "float":
            return math.nan
        raise InvalidInput(f"{spec.label(j)!r} is null; this model needs a value", field=field)
    if isinstance(value, bool):
        if kind == "bool":
            return float(value)
        raise InvalidInput(f"{spec.label(j)!r} must be a number, got a boolean", field=field)
    if kind == "bool":
        if value in (0, 1) and isinstance(value, _NUMBER):
            return float(value)
        raise InvalidInput(f"{spec.label(j)!r} must be a boolean, got {value!r}", field=field)
    if not isinstance(value, _NUMBER):
        raise InvalidInput(
            f"{spec.label(j)!r} must be a number, got {type(value).__name__} {value!r:.40}",
            field=field,
        )
    if kind == "int" and isinstance(value, float) and not value.is_integer():
        raise InvalidInput(f"{spec.label(j)!r} must be an integer, got {value!r}", field=field)
    return value


def check_finite(matrix: np.ndarray, spec: InputSpec, key: str) -> np.ndarray:
    """Reject inf always and NaN unless the estimator handles missing values."""
    # One sum answers the common case: it is finite only if every value is (a finite overflow
    # to inf merely sends us down the exact path below). For a row or a few, Python's sum of
    # the values as a list costs a fifth of setting up a numpy reduction.
    total = sum(matrix.ravel().tolist()) if matrix.size <= _SMALL else float(matrix.sum())
    if math.isfinite(total):
        return matrix
    if spec.allow_nan:
        bad = np.isinf(matrix)
        problem = "infinite"
    else:
        bad = ~np.isfinite(matrix)
        problem = "NaN or infinite"
    if bad.any():
        i, j = (int(x) for x in np.argwhere(bad)[0])
        field = f"{key}[{i}].{spec.label(j)}" if spec.names else f"{key}[{i}][{j}]"
        raise InvalidInput(f"{spec.label(j)!r} is {problem} ({matrix[i, j]})", field=field)
    return matrix
