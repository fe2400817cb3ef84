"""Drift gauges read from /metrics, their aggregation, the retrain trigger decision and
deterministic retrain naming (pure)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from modelyard_operator.conditions import parse_time
from modelyard_operator.modeldeployment.drift import DriftReading, PodDrift, aggregate, decide, parse_drift
from modelyard_operator.modeldeployment.models import parse_md
from modelyard_operator.modeldeployment.retrain import build_training_run, retrain_index, retrain_name
from modelyard_serving.drift import DriftSnapshot
from modelyard_serving.metrics import ServingMetrics
from prometheus_client import generate_latest

NOW = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
TEMPLATE = {
    "model": {"name": "iris"},
    "estimator": {"type": "logistic_regression"},
    "dataset": {"builtin": "iris"},
    "promotion": {"alias": "champion", "metric": "accuracy", "minValue": 0.8},
}


def pod(score: float, size: int, version: str | None = "3") -> PodDrift:
    return PodDrift(score, size, version)


def test_aggregate_weights_pods_by_window_size() -> None:
    reading = aggregate([pod(0.1, 300), pod(0.5, 100)], "3")
    assert reading == DriftReading(score=0.2, samples=400, pods=2, version="3")


def test_aggregate_ignores_other_versions_and_pods_without_drift() -> None:
    pods = [pod(0.9, 1000, version="2"), None, pod(0.4, 200), pod(0.7, 50, version=None)]
    assert aggregate(pods, "3") == DriftReading(0.4, 200, 1, "3")
    assert aggregate([pod(0.9, 10, version="2")], "3") is None
    assert aggregate([], "3") is None
    assert aggregate([None], "3") is None


def test_aggregate_empty_windows() -> None:
    assert aggregate([pod(0.0, 0)], "3") == DriftReading(0.0, 0, 1, "3")


def serving_metrics(snapshot: DriftSnapshot | None, version: str = "3") -> str:
    """/metrics text exactly as the model server renders it (the contract the reader relies on)."""
    metrics = ServingMetrics()
    metrics.set_model("iris", version, "sklearn", 0.5)
    metrics.add_drift(lambda: snapshot)
    metrics.observe_request("/predict", "POST", 200, 0.001)
    return generate_latest(metrics.registry).decode()


def test_parse_drift_reads_what_the_model_server_exports() -> None:
    snapshot = DriftSnapshot(window_size=812, capacity=10_000, features={"petal length (cm)": 0.9}, score=0.41)
    assert parse_drift(serving_metrics(snapshot)) == PodDrift(0.41, 812, "3")
    assert parse_drift(serving_metrics(snapshot, version="7")) == PodDrift(0.41, 812, "7")


@pytest.mark.parametrize("text", [
    "",
    "modelyard_serving_model_ready 1.0\n",  # no profile, drift off or not loaded: no drift gauges
    "modelyard_serving_drift_score{model_version=\"3\"} 0.4\n",  # no window size
    "this is { not prometheus\n",
    'modelyard_serving_drift_score{model_version="3"} NaN\nmodelyard_serving_drift_window_size 5\n',
])
def test_parse_drift_without_usable_gauges(text: str) -> None:
    assert parse_drift(text) is None


def test_no_drift_gauges_before_a_snapshot_exists() -> None:
    assert parse_drift(serving_metrics(None)) is None


def reading(score: float = 0.5, samples: int = 1000) -> DriftReading:
    return DriftReading(score, samples, 1, "3")


@pytest.mark.parametrize(("kwargs", "trigger", "why"), [
    ({}, True, ">= 0.2"),
    ({"reading": None}, False, "no drift reading"),
    ({"reading": reading(score=0.19)}, False, "< threshold"),
    ({"reading": reading(score=0.2)}, True, ">= 0.2"),  # the threshold itself triggers
    ({"reading": reading(samples=499)}, False, "minSamples"),
    ({"reading": reading(samples=500)}, True, ">= 0.2"),
    ({"last": NOW - dt.timedelta(minutes=59)}, False, "cooldown"),
    ({"last": NOW - dt.timedelta(minutes=60)}, True, ">= 0.2"),
    ({"running": True}, False, "still in progress"),
])
def test_decision(kwargs: dict[str, Any], trigger: bool, why: str) -> None:
    decision = decide(
        kwargs.get("reading", reading()),
        threshold=0.2, min_samples=500, cooldown_seconds=3600,
        last_retrain_time=kwargs.get("last"), retrain_running=kwargs.get("running", False),
        now=NOW,
    )
    assert decision.trigger is trigger
    assert why in decision.reason


def test_retrain_names_are_deterministic_and_short() -> None:
    assert retrain_index(None) == 0
    assert retrain_index({"trainingRun": "iris-retrain-7"}) == 7
    assert retrain_name("iris", 8) == "iris-retrain-8"
    long = retrain_name("m" * 63, 12)
    assert len(long) <= 56 and long.endswith("-retrain-12")  # TrainingRun's name limit


def test_training_run_from_template() -> None:
    md = parse_md({
        "apiVersion": "modelyard.io/v1alpha1", "kind": "ModelDeployment",
        "metadata": {"name": "iris", "namespace": "ml", "uid": "u", "generation": 1},
        "spec": {"model": {"name": "iris", "alias": "champion"},
                 "retrain": {"driftThreshold": 0.2, "trainingRunTemplate": TEMPLATE}},
    })
    run = build_training_run(md, 2, reading(0.41), "2026-01-01T12:00:00Z")
    assert run == {
        "apiVersion": "modelyard.io/v1alpha1",
        "kind": "TrainingRun",
        "metadata": {
            "name": "iris-retrain-2", "namespace": "ml",
            "labels": {"app.kubernetes.io/managed-by": "modelyard",
                       "app.kubernetes.io/part-of": "modelyard",
                       "modelyard.io/retrain-for": "iris"},
            "annotations": {"modelyard.io/retrain-trigger-time": "2026-01-01T12:00:00Z",
                            "modelyard.io/drift-score": "0.410000"},
        },
        "spec": TEMPLATE,
    }


def test_parse_time() -> None:
    assert parse_time("2026-01-01T12:00:00Z") == NOW
    assert parse_time(None) is None
    assert parse_time("yesterday") is None
