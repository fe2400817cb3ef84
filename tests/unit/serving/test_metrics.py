"""/metrics: request counts, latency, predictions by class, in-flight, model info, drift gauges."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from fastapi.testclient import TestClient
from modelyard_serving.model_store import ModelStore
from prometheus_client.parser import text_string_to_metric_families

from .conftest import IRIS_ROW, Registry, serve


def samples(client: TestClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = client.get("/metrics").text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(metrics: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return metrics[(name, frozenset(labels.items()))]


def test_requests_are_counted_by_route_template_method_and_status(iris_client: TestClient) -> None:
    iris_client.post("/predict", json={"instances": [IRIS_ROW]})
    iris_client.post("/predict", json={"instances": [IRIS_ROW]})
    iris_client.post("/predict", json={"instances": [[1.0]]})
    iris_client.post("/invocations", json={"dataframe_split": {"data": [IRIS_ROW]}})
    iris_client.post("/invocations", content=b"5.1,3.5,1.4,0.2", headers={"content-type": "text/csv"})
    iris_client.post("/v2/models/iris/infer", json={"inputs": []})
    iris_client.get("/v2/models/other/ready")
    iris_client.get("/nope/1")
    m = samples(iris_client)
    prefix = "modelyard_serving_requests_total"
    assert value(m, prefix, route="/predict", method="POST", status="200") == 2
    assert value(m, prefix, route="/predict", method="POST", status="422") == 1
    assert value(m, prefix, route="/invocations", method="POST", status="200") == 1
    assert value(m, prefix, route="/invocations", method="POST", status="415") == 1
    # Templates, not raw paths: model names and ids cannot blow up label cardinality.
    assert value(m, prefix, route="/v2/models/{model_name}/infer", method="POST", status="422") == 1
    assert value(m, prefix, route="/v2/models/{model_name}/ready", method="GET", status="404") == 1
    assert value(m, prefix, route="unmatched", method="GET", status="404") == 1


def test_latency_histogram_has_millisecond_buckets(iris_client: TestClient) -> None:
    iris_client.post("/predict", json={"instances": [IRIS_ROW]})
    iris_client.post("/invocations", json={"instances": [IRIS_ROW]})
    m = samples(iris_client)
    name = "modelyard_serving_request_duration_seconds"
    assert value(m, f"{name}_count", route="/predict") == 1
    assert value(m, f"{name}_count", route="/invocations") == 1
    bounds = sorted(
        float(dict(labels)["le"]) for (n, labels) in m if n == f"{name}_bucket" and dict(labels)["route"] == "/predict"
    )
    assert bounds[:3] == [0.0005, 0.001, 0.002]
    assert value(m, f"{name}_bucket", route="/predict", le="+Inf") == 1


def test_predictions_are_counted_by_class(iris_client: TestClient, registry: Registry) -> None:
    iris_client.post("/predict", json={"instances": registry.iris_data.to_numpy().tolist()})
    iris_client.post("/predict", json={"instances": [IRIS_ROW]})
    iris_client.post("/invocations", json={"instances": [IRIS_ROW]})
    m = samples(iris_client)
    name = "modelyard_serving_predictions_total"
    counts = {c: value(m, name, model_name="iris", model_version="1", **{"class": c}) for c in "012"}
    assert sum(counts.values()) == 152
    assert counts["0"] == 52  # iris has 50 setosa; the two extra rows are setosa too


def test_model_info_ready_and_in_flight(iris_client: TestClient) -> None:
    m = samples(iris_client)
    assert value(m, "modelyard_serving_model_info", model_name="iris", model_version="1", flavor="sklearn") == 1
    assert value(m, "modelyard_serving_model_ready") == 1
    # The scrape itself is in flight while the registry is rendered.
    assert value(m, "modelyard_serving_requests_in_flight") == 1
    assert value(m, "modelyard_serving_model_load_seconds") > 0


def test_drift_gauges_follow_the_window(iris_client: TestClient) -> None:
    iris_client.post("/predict", json={"instances": [[x * 3 for x in IRIS_ROW]] * 20})
    m = samples(iris_client)
    drift = iris_client.get("/drift").json()
    model = {"model_name": "iris", "model_version": "1"}  # the operator skips pods of other versions
    assert value(m, "modelyard_serving_drift_window_size", **model) == 20
    assert value(m, "modelyard_serving_drift_window_capacity", **model) == 10_000
    assert value(m, "modelyard_serving_drift_score", **model) == pytest.approx(drift["score"])
    for feature, psi in drift["features"].items():
        assert value(m, "modelyard_serving_feature_drift_psi", feature=feature, **model) == pytest.approx(psi)


def test_no_drift_gauges_without_a_profile(registry: Registry) -> None:
    store = ModelStore(registry.iris_no_profile)
    store.load()
    with serve(store) as client:
        text = client.get("/metrics").text
    assert "modelyard_serving_drift_score" not in text
    assert "modelyard_serving_model_info" in text


def test_access_log_is_one_json_object_per_request(iris_store: ModelStore, capfd: pytest.CaptureFixture[str]) -> None:
    with serve(iris_store, access_log=True) as client:
        client.post("/predict", json={"instances": [IRIS_ROW]})
    lines = [json.loads(line) for line in capfd.readouterr().err.splitlines() if line.startswith("{")]
    entry = next(e for e in lines if e.get("path") == "/predict")
    assert entry["logger"] == "modelyard_serving.access" and entry["level"] == "info"
    assert entry["method"] == "POST" and entry["status"] == 200 and entry["route"] == "/predict"
    assert entry["durationMs"] >= 0 and entry["ts"].endswith("Z")


def test_regressor_outputs_fill_a_histogram_for_the_canary_divergence_gate(registry: Registry) -> None:
    store = ModelStore(registry.regressor)
    store.load()
    with serve(store) as client:
        single = client.post("/predict", json={"instances": [[0.01] * 10]})
        batch = client.post("/predict", json={"instances": [[0.01] * 10, [-0.02] * 10, [0.0] * 10]})
        m = samples(client)
    outputs = single.json()["predictions"] + batch.json()["predictions"]
    name = "modelyard_serving_prediction_value"
    labels = {"model_name": "diabetes", "model_version": "1"}
    assert value(m, f"{name}_count", **labels) == 4
    # (No _sum: Prometheus histograms with negative buckets do not expose one.)
    # Each output lands in the first bucket whose bound is >= it (cumulative counts).
    assert value(m, f"{name}_bucket", le="100.0", **labels) == sum(o <= 100 for o in outputs)
    assert value(m, f"{name}_bucket", le="+Inf", **labels) == 4
    bounds = sorted(float(dict(k)["le"]) for (n, k) in m if n == f"{name}_bucket" and dict(k)["le"] != "+Inf")
    assert bounds[0] == -1e4 and bounds[-1] == 1e4 and 0.0 in bounds
    rows = value(m, "modelyard_serving_predictions_total", **labels, **{"class": ""})
    assert rows == 4


def test_classifiers_do_not_fill_the_output_histogram(iris_client: TestClient) -> None:
    iris_client.post("/predict", json={"instances": [IRIS_ROW] * 3})
    m = samples(iris_client)
    assert value(m, "modelyard_serving_prediction_value_count", model_name="iris", model_version="1") == 0


class _Broken:
    def predict(self, rows: object) -> object:
        raise RuntimeError("weights went missing")


def test_model_errors_are_counted_apart_from_bad_input(iris_store: ModelStore) -> None:
    assert iris_store.model is not None
    broken = ModelStore(iris_store.model_uri)
    broken.model = replace(iris_store.model, estimator=_Broken(), has_proba=False)
    with serve(broken) as client:
        failed = client.post("/predict", json={"instances": [IRIS_ROW]})
        invalid = client.post("/predict", json={"instances": [[1.0]]})
        m = samples(client)
    assert failed.status_code == 422 and failed.json()["code"] == "prediction_failed"
    assert invalid.status_code == 422
    assert value(m, "modelyard_serving_model_errors_total", model_name="iris", model_version="1") == 1
