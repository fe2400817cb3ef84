"""Open Inference Protocol v2 endpoints."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from .conftest import IRIS_FEATURES, IRIS_ROW

ROWS = [IRIS_ROW, [6.7, 3.0, 5.2, 2.3]]


def tensor(data: Any, shape: list[int], datatype: str = "FP64", name: str = "input-0") -> dict[str, Any]:
    return {"name": name, "shape": shape, "datatype": datatype, "data": data}


def test_server_health_and_metadata(iris_client: TestClient) -> None:
    assert iris_client.get("/v2/health/live").json() == {"live": True}
    assert iris_client.get("/v2/health/ready").json() == {"ready": True}
    assert iris_client.get("/v2").json()["name"] == "modelyard-serving"


def test_model_metadata_describes_inputs_and_outputs(iris_client: TestClient) -> None:
    meta = iris_client.get("/v2/models/iris").json()
    assert meta["name"] == "iris" and meta["versions"] == ["1"] and meta["platform"] == "sklearn"
    assert [i["name"] for i in meta["inputs"]] == IRIS_FEATURES
    assert {i["datatype"] for i in meta["inputs"]} == {"FP64"}
    assert meta["outputs"] == [
        {"name": "predict", "datatype": "INT64", "shape": [-1]},
        {"name": "predict_proba", "datatype": "FP64", "shape": [-1, 3]},
    ]
    assert iris_client.get("/v2/models/iris/versions/1").status_code == 200


def test_model_ready(iris_client: TestClient) -> None:
    assert iris_client.get("/v2/models/iris/ready").json() == {"name": "iris", "ready": True}
    assert iris_client.get("/v2/models/iris/versions/1/ready").status_code == 200


@pytest.mark.parametrize("datatype", ["FP64", "FP32"])
@pytest.mark.parametrize("nested", [False, True])
def test_infer_with_one_matrix_tensor(iris_client: TestClient, datatype: str, nested: bool) -> None:
    data = ROWS if nested else [v for row in ROWS for v in row]
    response = iris_client.post(
        "/v2/models/iris/infer", json={"id": "req-1", "inputs": [tensor(data, [2, 4], datatype)]}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["model_name"], body["model_version"], body["id"]) == ("iris", "1", "req-1")
    predict, proba = body["outputs"]
    assert predict == {"name": "predict", "shape": [2], "datatype": "INT64", "data": [0, 2]}
    assert proba["name"] == "predict_proba" and proba["shape"] == [2, 3] and proba["datatype"] == "FP64"
    assert len(proba["data"]) == 6
    assert proba["parameters"] == {"classes": [0, 1, 2]}
    simple = iris_client.post("/predict", json={"instances": ROWS}).json()
    assert proba["data"] == [p for row in simple["probabilities"] for p in row]


def test_infer_with_int64_tensor(iris_client: TestClient) -> None:
    response = iris_client.post("/v2/models/iris/infer", json={"inputs": [tensor([5, 3, 1, 0], [1, 4], "INT64")]})
    assert response.status_code == 200, response.text


def test_infer_with_one_tensor_per_feature(iris_client: TestClient) -> None:
    columns = [tensor([r[i] for r in ROWS], [2], name=name) for i, name in enumerate(IRIS_FEATURES)]
    response = iris_client.post("/v2/models/iris/infer", json={"inputs": list(reversed(columns))})
    assert response.status_code == 200, response.text
    assert response.json()["outputs"][0]["data"] == [0, 2]


def test_requested_outputs_are_honoured(iris_client: TestClient) -> None:
    body = {"inputs": [tensor(IRIS_ROW, [1, 4])], "outputs": [{"name": "predict"}]}
    outputs = iris_client.post("/v2/models/iris/infer", json=body).json()["outputs"]
    assert [o["name"] for o in outputs] == ["predict"]


@pytest.mark.parametrize(
    "path", ["/v2/models/other/infer", "/v2/models/other", "/v2/models/other/ready", "/v2/models/iris/versions/9/infer"]
)
def test_unknown_model_or_version_is_404(iris_client: TestClient, path: str) -> None:
    method = "POST" if path.endswith("infer") else "GET"
    response = iris_client.request(method, path, json={"inputs": [tensor(IRIS_ROW, [1, 4])]})
    assert response.status_code == 404
    assert response.json()["code"] == "model_not_found"
    assert "not served here" in response.json()["error"]


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"inputs": [tensor(IRIS_ROW[:3], [1, 3])]}, "inputs[0].shape", "has 3 features; the model expects 4"),
        ({"inputs": [tensor(IRIS_ROW, [2, 4])]}, "inputs[0].data", "has 4 values but shape [2, 4] needs 8"),
        ({"inputs": [tensor([], [0, 4])]}, "inputs[0].shape", "batch is empty"),
        ({"inputs": []}, "inputs", "inputs is empty"),
        ({"inputs": [tensor(["a", "b", "c", "d"], [1, 4], "BYTES")]}, "inputs[0].datatype", "not supported"),
        ({"inputs": [tensor([5.1, 3.5, "x", 0.2], [1, 4])]}, "inputs[0].data", "wrong type: 'x'"),
        ({"inputs": [tensor([5.5, 3, 1, 0], [1, 4], "INT64")]}, "inputs[0].data", "wrong type: 5.5"),
        ({"inputs": [tensor(IRIS_ROW, [1, -4])]}, "inputs[0].shape", "non-negative integers"),
        ({"inputs": [{"name": "x", "shape": [1, 4], "data": IRIS_ROW}]}, "inputs[0].datatype", "missing 'datatype'"),
        ({"inputs": [tensor(IRIS_ROW, [4], name="petal length (cm)")]}, "inputs", "missing feature tensor(s)"),
        ({"inputs": [tensor(IRIS_ROW, [4], name="colour")]}, "inputs[0].name", "'colour' is not a model feature"),
        ({"instances": [IRIS_ROW]}, "inputs", '"inputs" list of tensors'),
        ({"inputs": [tensor(IRIS_ROW, [1, 4])], "outputs": [{"name": "logits"}]}, "outputs", "unknown output"),
    ],
)
def test_bad_infer_requests_are_422(iris_client: TestClient, body: Any, field: str, message: str) -> None:
    response = iris_client.post("/v2/models/iris/infer", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    assert message in response.json()["error"]


def test_infer_rejects_nan(iris_client: TestClient) -> None:
    raw = b'{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [5.1, NaN, 1.4, 0.2]}]}'
    response = iris_client.post("/v2/models/iris/infer", content=raw)
    assert response.status_code == 422
    assert "NaN" in response.json()["error"]
