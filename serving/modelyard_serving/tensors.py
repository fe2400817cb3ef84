"""Open Inference Protocol v2 request tensors -> a validated float64 matrix."""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import InvalidInput
from .signature import InputSpec
from .validation import check_finite

_FLOAT = frozenset({"FP16", "FP32", "FP64"})
_INT = frozenset({f"{p}INT{b}" for p in ("", "U") for b in (8, 16, 32, 64)})


def rows_from_infer_body(payload: Any, spec: InputSpec) -> np.ndarray:
    if not isinstance(payload, dict) or not isinstance(payload.get("inputs"), list):
        raise InvalidInput('body must be an object with an "inputs" list of tensors', field="inputs")
    tensors = payload["inputs"]
    if not tensors:
        raise InvalidInput("inputs is empty; send at least one tensor", field="inputs")
    first = tensors[0]
    if len(tensors) == 1 and isinstance(first, dict) and len(first.get("shape") or ()) == 2:
        values, shape = _tensor(first, "inputs[0]")
        if shape[1] != spec.n_features:
            raise InvalidInput(
                f"tensor shape {shape} has {shape[1]} features; the model expects {spec.n_features}",
                field="inputs[0].shape",
            )
        matrix = values.reshape(shape[0], shape[1])
    else:
        matrix = _columns_to_matrix(tensors, spec)
    if matrix.shape[0] == 0:
        raise InvalidInput("the batch is empty; send at least one row", field="inputs[0].shape")
    return check_finite(matrix, spec, "inputs")


def _columns_to_matrix(tensors: list[Any], spec: InputSpec) -> np.ndarray:
    """One 1-D tensor per feature, named like the signature (MLServer's pandas codec style)."""
    if spec.names is None:
        raise InvalidInput(
            "send one tensor of shape [n, features]; this model's signature has no feature names", field="inputs"
        )
    columns: dict[int, np.ndarray] = {}
    for i, tensor in enumerate(tensors):
        values, shape = _tensor(tensor, f"inputs[{i}]")
        name = tensor["name"]
        if name not in spec.index:
            raise InvalidInput(
                f"tensor {name!r} is not a model feature; expected a [n, features] "
                f"tensor or one tensor per feature of {list(spec.names)}",
                field=f"inputs[{i}].name",
            )
        if len(shape) > 2 or (len(shape) == 2 and shape[1] != 1):
            raise InvalidInput(f"feature tensor {name!r} must have shape [n] or [n, 1]", field=f"inputs[{i}].shape")
        columns[spec.index[name]] = values
    missing = [n for n in spec.names if spec.index[n] not in columns]
    if missing:
        raise InvalidInput(f"missing feature tensor(s) {missing}", field="inputs")
    if len({c.shape[0] for c in columns.values()}) != 1:
        raise InvalidInput("feature tensors have different lengths", field="inputs")
    return np.column_stack([columns[j] for j in range(spec.n_features)])


def _tensor(tensor: Any, where: str) -> tuple[np.ndarray, list[int]]:
    if not isinstance(tensor, dict):
        raise InvalidInput(f"{where} must be a tensor object", field=where)
    for key in ("name", "shape", "datatype", "data"):
        if key not in tensor:
            raise InvalidInput(f"{where} is missing {key!r}", field=f"{where}.{key}")
    shape, datatype, data = tensor["shape"], tensor["datatype"], tensor["data"]
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise InvalidInput(f"{where}.shape must be a list of non-negative integers", field=f"{where}.shape")
    if datatype not in _FLOAT and datatype not in _INT and datatype != "BOOL":
        raise InvalidInput(
            f"datatype {datatype!r} is not supported; use FP64, FP32 or INT64", field=f"{where}.datatype"
        )
    flat = _flatten(data, where)
    if len(flat) != int(np.prod(shape)):
        raise InvalidInput(
            f"{where} has {len(flat)} values but shape {shape} needs {int(np.prod(shape))}", field=f"{where}.data"
        )
    _check_types(flat, datatype, where)
    try:
        return np.array(flat, dtype=np.float64), shape
    except OverflowError:
        raise InvalidInput(f"{where} has an integer too large", field=f"{where}.data") from None


def _flatten(data: Any, where: str) -> list[Any]:
    if not isinstance(data, list):
        raise InvalidInput(f"{where}.data must be a list", field=f"{where}.data")
    if not data or type(data[0]) is not list:
        return data
    flat: list[Any] = []
    for item in data:
        if isinstance(item, list):
            flat.extend(_flatten(item, where))
        else:
            flat.append(item)
    return flat


def _is_float(value: Any) -> bool:
    return type(value) is float or type(value) is int


def _is_int(value: Any) -> bool:
    return type(value) is int


def _is_bool(value: Any) -> bool:
    return type(value) is bool


def _check_types(flat: list[Any], datatype: str, where: str) -> None:
    valid = _is_bool if datatype == "BOOL" else _is_int if datatype in _INT else _is_float
    for value in flat:
        if not valid(value):
            raise InvalidInput(
                f"{where} ({datatype}) holds a value of the wrong type: {value!r:.40}", field=f"{where}.data"
            )
