"""Drift -> exactly one TrainingRun -> alias moves -> the ModelDeployment rolls forward.

Real serving pods compute drift, the operator reads it through the Service's endpoints, the
TrainingRun runs the training image, and its promotion rule moves the alias in MLflow.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest
from kubernetes import client

from tests.helpers import condition, kubectl_apply, mlflow_client, wait_for

from .test_modeldeployment import (
    get_md,
    log_iris_version,
    md_manifest,
    operator_metrics,
    predict,
    ready_endpoints,
    unique,
    wait_condition,
    wait_serving,
)

pytestmark = pytest.mark.integration
RUN_TIMEOUT = 420  # the training pod: cold imports, fit, MLflow logging and registration
DRIFT_INTERVAL = 3  # MODELYARD_DRIFT_INTERVAL in the operator fixture


def retrain_runs(cluster: Any, namespace: str, name: str) -> list[dict[str, Any]]:
    result: Any = client.CustomObjectsApi(cluster.api).list_namespaced_custom_object(
        "modelyard.io", "v1alpha1", namespace, "trainingruns",
        label_selector=f"modelyard.io/retrain-for={name}")
    return list(result["items"])


def send(cluster: Any, namespace: str, name: str, rows: np.ndarray, batch: int = 50) -> None:
    ips = ready_endpoints(cluster, namespace, name)
    assert ips, "no ready serving pod"
    for i in range(0, len(rows), batch):
        predict(ips[(i // batch) % len(ips)], rows[i:i + batch].tolist())


def iris_rows(n: int, scale: float = 1.0, seed: int = 0) -> np.ndarray:
    from sklearn.datasets import load_iris

    x = load_iris().data
    rng = np.random.default_rng(seed)
    rows: np.ndarray = x[rng.integers(0, len(x), n)] * scale
    return rows


def test_drift_triggers_one_retrain_that_rolls_the_deployment(
    cluster: Any, namespace: str, operator: Any,
) -> None:
    model, name = unique("iris"), "iris-drift"
    v1 = log_iris_version(cluster, model)
    mlflow_client(cluster).set_registered_model_alias(model, "champion", v1)
    template = {
        "model": {"name": model},
        "estimator": {"type": "logistic_regression", "hyperparameters": {"max_iter": 500}},
        "dataset": {"builtin": "iris"},
        "promotion": {"alias": "champion", "metric": "accuracy", "minValue": 0.5},
    }
    retrain = {"driftThreshold": 0.5, "minSamples": 200, "cooldown": "1h",
               "trainingRunTemplate": template}
    kubectl_apply(cluster, namespace, md_manifest(name, {"name": model, "alias": "champion"},
                                                  retrain=retrain))
    wait_serving(cluster, namespace, name, v1)

    # In-distribution traffic: drift stays low, nothing is triggered.
    send(cluster, namespace, name, iris_rows(400))
    time.sleep(3 * DRIFT_INTERVAL)
    assert retrain_runs(cluster, namespace, name) == []
    assert "lastRetrain" not in get_md(cluster, namespace, name)["status"]

    # Shifted traffic (features x3): drift crosses the threshold -> exactly one TrainingRun.
    send(cluster, namespace, name, iris_rows(400, scale=3.0, seed=1))
    runs = wait_for(lambda: retrain_runs(cluster, namespace, name), 60, what="retrain TrainingRun")
    assert [r["metadata"]["name"] for r in runs] == [f"{name}-retrain-1"]
    run = runs[0]
    assert run["spec"]["promotion"]["alias"] == "champion"
    assert run["metadata"]["ownerReferences"][0]["name"] == name
    md = wait_condition(cluster, namespace, name, "Retraining", "True", timeout=30)
    last = md["status"]["lastRetrain"]
    assert last["trainingRun"] == f"{name}-retrain-1" and last["score"] >= 0.5

    scraped = operator_metrics(operator)
    assert f'modelyard_operator_retrains_total{{modeldeployment="{namespace}/{name}"}} 1.0' in scraped

    # Operator restart mid-loop, while drift is still high: no duplicate run.
    operator.restart()
    send(cluster, namespace, name, iris_rows(200, scale=3.0, seed=2))
    time.sleep(4 * DRIFT_INTERVAL)
    assert len(retrain_runs(cluster, namespace, name)) == 1

    # The run trains, registers v2 and moves the alias; the deployment follows by itself.
    md = wait_condition(cluster, namespace, name, "Retraining", "False", "TrainingRunSucceeded",
                        timeout=RUN_TIMEOUT)
    v2 = mlflow_client(cluster).get_model_version_by_alias(model, "champion").version
    assert v2 != v1
    wait_serving(cluster, namespace, name, str(v2))
    assert get_md(cluster, namespace, name)["status"]["previousVersion"] == v1

    # Cooldown: drift on the new version is high again, yet no second run within 1h.
    send(cluster, namespace, name, iris_rows(400, scale=3.0, seed=3))
    time.sleep(4 * DRIFT_INTERVAL)
    assert len(retrain_runs(cluster, namespace, name)) == 1
    assert condition(get_md(cluster, namespace, name), "Retraining")["status"] == "False"
