"""Every bad input is a 4xx that names the problem, never a 5xx."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from modelyard_serving.errors import InvalidInput
from modelyard_serving.signature import ColumnKind, InputSpec, _make
from modelyard_serving.validation import rows_from_predict_body

from .conftest import IRIS_FEATURES, IRIS_ROW

RECORD = dict(zip(IRIS_FEATURES, IRIS_ROW, strict=True))


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"instances": [[5.1, 3.5, 1.4]]}, "instances[0]", "has 3 values; the model expects 4"),
        ({"instances": [[5.1, 3.5, 1.4, 0.2, 9.9]]}, "instances[0]", "has 5 values"),
        ({"instances": [IRIS_ROW, [1.0]]}, "instances[1]", "has 1 values"),
        ({"instances": [[5.1, 3.5, "1.4", 0.2]]}, "instances[0].petal length (cm)", "must be a number, got str"),
        ({"instances": [[5.1, 3.5, True, 0.2]]}, "instances[0].petal length (cm)", "got a boolean"),
        ({"instances": [[5.1, None, 1.4, 0.2]]}, "instances[0].sepal width (cm)", "is null"),
        ({"instances": [[5.1, [3.5], 1.4, 0.2]]}, "instances[0].sepal width (cm)", "must be a number, got list"),
        ({"instances": [5.1, 3.5, 1.4, 0.2]}, "instances[0]", "must be a list of 4 values"),
        ({"instances": []}, "instances", "is empty"),
        ({"inputs": []}, "inputs", "is empty"),
        ({"instances": "5.1,3.5"}, "instances", "must be a list"),
        ({"rows": [IRIS_ROW]}, "body", '"instances" or an "inputs"'),
        ([IRIS_ROW], "body", "must be a JSON object"),
        ({"inputs": [{**RECORD, "petal colour": 1.0}]}, "inputs[0].petal colour", "unknown feature"),
        (
            {"inputs": [{k: v for k, v in RECORD.items() if k != "petal width (cm)"}]},
            "inputs[0].petal width (cm)",
            "missing feature 'petal width (cm)'",
        ),
        ({"instances": [[5.1, 3.5, 10**400, 0.2]]}, "instances", "too large"),
    ],
)
def test_bad_predict_bodies_are_422_naming_the_field(
    iris_client: TestClient, body: Any, field: str, message: str
) -> None:
    response = iris_client.post("/predict", json=body)
    assert response.status_code == 422, response.text
    error = response.json()
    assert error["code"] == "invalid_input"
    assert error["field"] == field
    assert message in error["error"]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"instances": [[5.1, NaN, 1.4, 0.2]]}', "'sepal width (cm)' is NaN or infinite"),
        (b'{"instances": [[5.1, 3.5, -Infinity, 0.2]]}', "'petal length (cm)' is NaN or infinite"),
        (b'{"instances": [[5.1, 3.5, 1e999, 0.2]]}', "is NaN or infinite"),
        (b'{"instances": [[5.1, 3.5', "not valid JSON"),
        (b"", "body is empty"),
        (b"\xff\xfe", "not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),
    ],
)
def test_non_finite_and_malformed_json_are_422(iris_client: TestClient, raw: bytes, message: str) -> None:
    response = iris_client.post("/predict", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert message in response.json()["error"]


def test_fuzzed_bodies_never_cause_a_server_error(iris_client: TestClient) -> None:
    rng = np.random.default_rng(7)
    atoms: list[Any] = [None, True, "x", 1, -1.5, 1e308, [], {}, [1.0], {"a": 1}, "NaN", 10**30]
    for _ in range(300):
        row = [atoms[i] for i in rng.integers(0, len(atoms), size=int(rng.integers(0, 6)))]
        shapes: list[Any] = [{"instances": [row]}, {"inputs": [dict(enumerate(row))]}, {"instances": row}, row]
        body = shapes[int(rng.integers(0, len(shapes)))]
        response = iris_client.post("/predict", json=body)
        assert response.status_code < 500, (body, response.text)


def _spec(
    kinds: tuple[ColumnKind, ...],
    *,
    names: bool = True,
    required: tuple[bool, ...] | None = None,
    allow_nan: bool = False,
) -> InputSpec:
    labels = tuple(f"f{i}" for i in range(len(kinds))) if names else None
    return _make(labels, kinds, required or (True,) * len(kinds), allow_nan)


def test_integer_columns_take_integers_and_integral_floats() -> None:
    spec = _spec(("int", "float"))
    rows = rows_from_predict_body({"instances": [[3, 0.5], [4.0, 1]]}, spec)
    np.testing.assert_array_equal(rows, [[3.0, 0.5], [4.0, 1.0]])
    with pytest.raises(InvalidInput, match=r"'f0' must be an integer, got 3\.5") as caught:
        rows_from_predict_body({"instances": [[3.5, 0.5]]}, spec)
    assert caught.value.field == "instances[0].f0"


def test_boolean_columns_take_booleans_and_zero_or_one() -> None:
    spec = _spec(("bool", "float"))
    rows = rows_from_predict_body({"inputs": [{"f0": True, "f1": 2.0}, {"f0": 0, "f1": 1}]}, spec)
    np.testing.assert_array_equal(rows, [[1.0, 2.0], [0.0, 1.0]])
    with pytest.raises(InvalidInput, match="must be a boolean"):
        rows_from_predict_body({"instances": [[2, 1.0]]}, spec)


def test_optional_columns_may_be_missing_only_when_nan_is_allowed() -> None:
    tolerant = _spec(("float", "float"), required=(True, False), allow_nan=True)
    rows = rows_from_predict_body({"inputs": [{"f0": 1.0}]}, tolerant)
    assert rows[0, 0] == 1.0 and np.isnan(rows[0, 1])
    strict = _spec(("float", "float"), required=(True, False))
    with pytest.raises(InvalidInput, match="'f1' is null"):
        rows_from_predict_body({"inputs": [{"f0": 1.0}]}, strict)


def test_unnamed_signatures_refuse_records_and_name_positions() -> None:
    spec = _spec(("float", "float"), names=False)
    with pytest.raises(InvalidInput, match="no feature names"):
        rows_from_predict_body({"inputs": [{"a": 1.0, "b": 2.0}]}, spec)
    with pytest.raises(InvalidInput) as caught:
        rows_from_predict_body({"instances": [[1.0, "b"]]}, spec)
    assert caught.value.field == "instances[0][1]"
    assert "'feature 1'" in caught.value.message
