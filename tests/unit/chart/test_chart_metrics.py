"""Every metric a dashboard or alert queries is one our components really export.

The reference is real /metrics output: the model server (create_app + TestClient) serving a
small sklearn model registered in a throwaway sqlite MLflow store, and the operator's
registry as `generate_latest` renders it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import chartlib
import numpy as np
import pytest
from chartlib import dashboard_queries, load_dashboards, promql_metric_names, render, rule_exprs

MODEL = "chart-metrics-iris"


def drift_profile(frame: Any, bins: int = 10) -> dict[str, Any]:
    """The reference profile training stores with a model (docs/contracts.md)."""
    features = []
    for column in frame.columns:
        values = frame[column].to_numpy(dtype=np.float64)
        cuts = np.unique(np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1]))
        counts = np.bincount(np.searchsorted(cuts, values, side="left"), minlength=len(cuts) + 1)
        features.append({"name": column, "cuts": cuts.tolist(), "expected": (counts / counts.sum()).tolist()})
    return {"version": 1, "sampleCount": len(frame), "bins": bins, "features": features}


@pytest.fixture(scope="module")
def serving_metrics(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    import mlflow
    import mlflow.sklearn
    from fastapi.testclient import TestClient
    from mlflow.models import infer_signature
    from modelyard_serving.app import create_app
    from modelyard_serving.settings import ServingSettings
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    store = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{store / 'mlflow.db'}"
    frame, target = load_iris(return_X_y=True, as_frame=True)
    estimator = LogisticRegression(max_iter=500).fit(frame.to_numpy(dtype=np.float64), target)
    # Only the environment points mlflow at the throwaway store (no global set_tracking_uri),
    # so nothing leaks into later tests.
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MLFLOW_TRACKING_URI", uri)
        experiment = mlflow.create_experiment("chart-metrics", artifact_location=(store / "artifacts").as_uri())
        with mlflow.start_run(experiment_id=experiment):
            mlflow.sklearn.log_model(
                estimator,
                name="model",
                signature=infer_signature(frame, estimator.predict(frame.to_numpy())),
                metadata={"modelyard_profile": drift_profile(frame)},
                registered_model_name=MODEL,
            )
        settings = ServingSettings(model_uri=f"models:/{MODEL}/1", drift_window=1000, access_log=False)
        with TestClient(create_app(settings)) as client:
            deadline = time.monotonic() + 60
            while client.get("/readyz").status_code != 200:
                assert time.monotonic() < deadline, client.get("/readyz").json()
                time.sleep(0.1)
            rows = frame.to_numpy().tolist()
            assert client.post("/predict", json={"instances": rows[:50]}).status_code == 200
            assert client.post("/predict", json={"instances": [[1.0]]}).status_code == 422
            assert client.get("/drift").json()["available"] is True
            yield client.get("/metrics").text


@pytest.fixture(scope="module")
def operator_metrics() -> str:
    from modelyard_operator.metrics import REGISTRY
    from prometheus_client import generate_latest

    return generate_latest(REGISTRY).decode()


@pytest.fixture(scope="module")
def exported(serving_metrics: str, operator_metrics: str) -> set[str]:
    return chartlib.exposed_sample_names(serving_metrics) | chartlib.exposed_sample_names(operator_metrics)


def test_reference_outputs_are_real(serving_metrics: str, operator_metrics: str, exported: set[str]) -> None:
    # Sanity: the scrape saw traffic, a loaded model and drift, so absent names mean absent metrics.
    info = next(line for line in serving_metrics.splitlines() if line.startswith("modelyard_serving_model_info{"))
    assert 'model_name="chart-metrics-iris"' in info and 'model_version="1"' in info
    assert "modelyard_serving_request_duration_seconds_bucket{" in serving_metrics
    assert "modelyard_serving_feature_drift_psi{" in serving_metrics
    assert "modelyard_operator_reconciles_total" in exported
    assert "process_resident_memory_bytes" in exported


@pytest.mark.parametrize("name", sorted(load_dashboards()))
def test_dashboard_metrics_exist(name: str, exported: set[str]) -> None:
    missing = {
        metric: query
        for query in dashboard_queries(load_dashboards()[name])
        for metric in promql_metric_names(query)
        if metric not in exported
    }
    assert not missing, f"{name} queries metrics nobody exports: {missing}"


def test_alert_rule_metrics_exist(exported: set[str]) -> None:
    exprs = rule_exprs(render("monitoring"))
    missing = {alert: sorted(promql_metric_names(expr) - exported) for alert, expr in exprs.items()}
    missing = {alert: names for alert, names in missing.items() if names}
    assert not missing, f"alerts on metrics nobody exports: {missing}"


def test_every_expression_names_a_metric() -> None:
    """Guards the extractor: an expression yielding no name would pass vacuously."""
    for board in load_dashboards().values():
        for query in dashboard_queries(board):
            assert promql_metric_names(query), query
    for alert, expr in rule_exprs(render("monitoring")).items():
        assert promql_metric_names(expr), alert


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('sum by (service, le) (rate(a_bucket{route!~"/metrics|/x"}[5m]))', {"a_bucket"}),
        ("histogram_quantile(0.99, sum by (le) (rate(b_bucket[$__rate_interval])))", {"b_bucket"}),
        ('x_total{status=~"5.."} / ignoring(status) group_left y_total > 0.5', {"x_total", "y_total"}),
        ("max without (pod) (g) * on (namespace) group_left(model) info", {"g", "info"}),
        ('count(up{job="a"}) offset 5m > bool 1e3', {"up"}),
        (
            'label_values(modelyard_serving_model_info{namespace=~"$namespace"}, service)',
            {"modelyard_serving_model_info"},
        ),
        ("label_values(namespace)", set()),
        ('sum(rate(z_total{a="by (x)"}[1h:5m]))', {"z_total"}),
    ],
)
def test_promql_metric_extraction(expr: str, names: set[str]) -> None:
    assert promql_metric_names(expr) == names


def test_histogram_and_counter_names_are_derived_from_types() -> None:
    text = (
        "# HELP h_seconds h\n# TYPE h_seconds histogram\n"
        "# HELP c_total c\n# TYPE c_total counter\n"
        "# HELP g g\n# TYPE g gauge\ng 1.0\n"
    )
    assert chartlib.exposed_sample_names(text) >= {
        "h_seconds_bucket",
        "h_seconds_sum",
        "h_seconds_count",
        "c_total",
        "g",
    }


def test_dashboards_dir_matches_chart() -> None:
    assert Path(chartlib.CHART / "dashboards").is_dir()
