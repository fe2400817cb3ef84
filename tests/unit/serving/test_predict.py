"""POST /predict: both input forms, classifier and regressor responses."""

from __future__ import annotations

import math

import numpy as np
from fastapi.testclient import TestClient
from modelyard_serving.model_store import ModelStore

from .conftest import IRIS_FEATURES, IRIS_ROW, Registry, serve


def test_instances_return_labels_probabilities_and_model_identity(iris_client: TestClient) -> None:
    response = iris_client.post("/predict", json={"instances": [IRIS_ROW, [6.7, 3.0, 5.2, 2.3]]})

    assert response.status_code == 200
    body = response.json()
    assert body["modelName"] == "iris"
    assert body["modelVersion"] == "1"
    assert body["predictions"] == [0, 2]
    assert body["classes"] == [0, 1, 2]
    assert len(body["probabilities"]) == 2
    for row in body["probabilities"]:
        assert len(row) == 3
        assert math.isclose(sum(row), 1.0, rel_tol=1e-9)
    # The confidence is the predicted class's own probability.
    assert body["confidences"] == [max(row) for row in body["probabilities"]]


def test_prediction_is_the_most_probable_class(iris_client: TestClient, registry: Registry) -> None:
    rows = registry.iris_data.to_numpy().tolist()
    body = iris_client.post("/predict", json={"instances": rows}).json()
    best = [body["classes"][int(np.argmax(p))] for p in body["probabilities"]]
    assert body["predictions"] == best


def test_matches_the_estimator_itself(iris_client: TestClient, iris_store: ModelStore, registry: Registry) -> None:
    rows = registry.iris_data.to_numpy(np.float64)
    body = iris_client.post("/predict", json={"instances": rows.tolist()}).json()
    assert iris_store.model is not None
    expected = iris_store.model.estimator.predict_proba(rows)
    np.testing.assert_allclose(np.array(body["probabilities"]), expected, rtol=1e-12)


def test_records_are_matched_by_feature_name_not_order(iris_client: TestClient) -> None:
    record = dict(zip(reversed(IRIS_FEATURES), reversed(IRIS_ROW), strict=True))
    by_name = iris_client.post("/predict", json={"inputs": [record]}).json()
    by_position = iris_client.post("/predict", json={"instances": [IRIS_ROW]}).json()
    assert by_name["probabilities"] == by_position["probabilities"]


def test_instances_may_also_be_objects(iris_client: TestClient) -> None:
    record = dict(zip(IRIS_FEATURES, IRIS_ROW, strict=True))
    response = iris_client.post("/predict", json={"instances": [record]})
    assert response.status_code == 200
    assert response.json()["predictions"] == [0]


def test_integers_are_accepted_for_float_features(iris_client: TestClient) -> None:
    response = iris_client.post("/predict", json={"instances": [[5, 3, 1, 0]]})
    assert response.status_code == 200


def test_regressor_returns_values_without_probabilities(registry: Registry) -> None:
    store = ModelStore(registry.regressor)
    store.load()
    rows = [[0.01] * 10, [-0.02] * 10]
    with serve(store) as client:
        response = client.post("/predict", json={"instances": rows})
    assert response.status_code == 200
    body = response.json()
    assert body["modelName"] == "diabetes"
    assert "probabilities" not in body and "classes" not in body and "confidences" not in body
    assert store.model is not None
    np.testing.assert_allclose(body["predictions"], store.model.estimator.predict(np.array(rows)))


def test_nan_reaches_models_that_handle_missing_values(registry: Registry) -> None:
    store = ModelStore(registry.nan_tolerant)
    store.load()
    with serve(store) as client:
        as_null = client.post("/predict", json={"instances": [[5.1, None, 1.4, 0.2]]})
        as_nan = client.post(
            "/predict", content=b'{"instances": [[5.1, NaN, 1.4, 0.2]]}', headers={"content-type": "application/json"}
        )
        inf = client.post("/predict", content=b'{"instances": [[5.1, Infinity, 1.4, 0.2]]}')
    assert as_null.status_code == 200, as_null.text
    assert as_nan.status_code == 200, as_nan.text
    assert as_null.json()["probabilities"] == as_nan.json()["probabilities"]
    assert inf.status_code == 422
    assert "infinite" in inf.json()["error"]
