"""POST /invocations: MLflow's scoring protocol, answered like `mlflow models serve` answers it."""

from __future__ import annotations

from typing import Any

import mlflow.pyfunc
import pytest
from fastapi.testclient import TestClient
from modelyard_serving.model_store import ModelStore

from .conftest import IRIS_FEATURES, IRIS_ROW, Registry, serve

SHUFFLED = [IRIS_FEATURES[i] for i in (2, 0, 3, 1)]
RECORD = dict(zip(IRIS_FEATURES, IRIS_ROW, strict=True))


def test_what_pandas_clients_send_is_answered_like_mlflow_pyfunc(iris_client: TestClient, registry: Registry) -> None:
    frame = registry.iris_data.iloc[::10]
    expected = mlflow.pyfunc.load_model(registry.iris).predict(frame).tolist()
    # The bodies MLflow's docs and clients build from a DataFrame (split includes the index).
    for body in (
        {"dataframe_split": frame.to_dict(orient="split")},
        {"dataframe_records": frame.to_dict(orient="records")},
        {"instances": frame.to_numpy().tolist()},
        {"inputs": frame.to_dict(orient="list")},
    ):
        response = iris_client.post("/invocations", json=body)
        assert response.status_code == 200, (list(body), response.text)
        assert response.json() == {"predictions": expected}


@pytest.mark.parametrize(
    "body",
    [
        {"dataframe_split": {"columns": IRIS_FEATURES, "data": [IRIS_ROW]}},
        {"dataframe_split": {"data": [IRIS_ROW]}},  # no columns: signature order
        {"dataframe_split": {"columns": SHUFFLED, "data": [[RECORD[c] for c in SHUFFLED]], "index": [7]}},
        {"dataframe_records": [RECORD]},
        {"instances": [IRIS_ROW]},
        {"instances": [RECORD]},
        {"inputs": [IRIS_ROW]},
        {"inputs": {name: [value] for name, value in RECORD.items()}},
        {"inputs": [IRIS_ROW], "params": {"anything": 1}},
        {"instances": [IRIS_ROW], "params": None},
    ],
)
def test_every_format_predicts_the_same_row(iris_client: TestClient, body: dict[str, Any]) -> None:
    expected = iris_client.post("/predict", json={"instances": [IRIS_ROW]}).json()["predictions"]
    response = iris_client.post("/invocations", json=body)
    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": expected}


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ([IRIS_ROW], "body", "JSON object"),
        ({}, "body", "got none"),
        ({"instances": [IRIS_ROW], "inputs": [IRIS_ROW]}, "body", "got instances, inputs"),
        ({"instances": [IRIS_ROW], "extra": 1}, "extra", "unknown field 'extra'"),
        ({"instances": [IRIS_ROW], "params": [1]}, "params", "params must be an object"),
        ({"instances": []}, "instances", "empty"),
        ({"instances": {"a": 1}}, "instances", "must be a list"),
        ({"instances": [[1.0, 2.0]]}, "instances[0]", "has 2 values; the model expects 4"),
        ({"dataframe_records": [{**RECORD, "colour": 1}]}, "dataframe_records[0].colour", "unknown feature"),
        ({"dataframe_records": [{"sepal length (cm)": 1.0}]}, "dataframe_records[0].sepal width (cm)", "missing"),
        ({"dataframe_split": [IRIS_ROW]}, "dataframe_split", "must be an object"),
        ({"dataframe_split": {"data": [IRIS_ROW], "rows": 1}}, "dataframe_split", "unknown field 'rows'"),
        ({"dataframe_split": {"columns": IRIS_FEATURES}}, "dataframe_split.data", "list of rows"),
        ({"dataframe_split": {"data": [IRIS_ROW], "index": [1, 2]}}, "dataframe_split.index", "one label per row"),
        ({"dataframe_split": {"columns": SHUFFLED, "data": [[1.0]]}}, "dataframe_split.data[0]", "4 values"),
        ({"dataframe_split": {"columns": [1, 2, 3, 4], "data": [IRIS_ROW]}}, "dataframe_split.columns", "names"),
        ({"dataframe_split": {"columns": [SHUFFLED[0]] * 4, "data": [IRIS_ROW]}}, "dataframe_split.columns", "dup"),
        (
            {"dataframe_split": {"columns": SHUFFLED, "data": [["x", 1.0, 1.0, 1.0]]}},
            f"dataframe_split.data[0].{SHUFFLED[0]}",
            "must be a number",
        ),
        ({"inputs": {"sepal length (cm)": 1.0}}, "inputs.sepal length (cm)", "one value per row"),
        ({"inputs": {"sepal length (cm)": [1.0], "sepal width (cm)": []}}, "inputs", "different lengths"),
        ({"inputs": {}}, "inputs", "empty"),
        ({"instances": [[10**400, 1.0, 1.0, 1.0]]}, "instances", "integer too large"),
    ],
)
def test_bad_input_is_422_naming_the_field(iris_client: TestClient, body: Any, field: str, message: str) -> None:
    response = iris_client.post("/invocations", json=body)
    assert response.status_code == 422, response.text
    error = response.json()
    assert error["code"] == "invalid_input"
    assert error["field"] == field
    assert message in error["error"]


@pytest.mark.parametrize("content_type", [None, "text/csv", "application/x-www-form-urlencoded", "text/plain"])
def test_a_body_that_is_not_json_is_415(iris_client: TestClient, content_type: str | None) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = iris_client.post("/invocations", content=b'{"instances": [[5.1, 3.5, 1.4, 0.2]]}', headers=headers)
    assert response.status_code == 415, response.text
    assert response.json()["code"] == "unsupported_media_type"
    assert response.json()["field"] == "content-type"


def test_json_with_parameters_is_json(iris_client: TestClient) -> None:
    response = iris_client.post(
        "/invocations",
        content=b'{"instances": [[5.1, 3.5, 1.4, 0.2]]}',
        headers={"content-type": "Application/JSON; charset=utf-8"},
    )
    assert response.status_code == 200


def test_oversized_body_is_413(iris_store: ModelStore) -> None:
    with serve(iris_store, max_body_bytes=100) as client:
        response = client.post("/invocations", json={"instances": [IRIS_ROW] * 10})
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"


def test_a_regressor_answers_its_values(registry: Registry) -> None:
    store = ModelStore(registry.regressor)
    store.load()
    with serve(store) as client:
        predicted = client.post("/predict", json={"instances": [[0.01] * 10]}).json()["predictions"]
        response = client.post("/invocations", json={"instances": [[0.01] * 10]})
    assert response.json() == {"predictions": predicted}
