"""MLflow on PostgreSQL + S3 (versitygw): the stores' outages behave like an MLflow outage.

These run in `make test`'s second pass, where the harness runs MLflow on the postgres-s3 backend
(MODELYARD_MLFLOW_BACKEND=postgres-s3); on sqlite they skip. Nothing that serves may break while
a store is away, the conditions say why, and everything recovers without a hand.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.helpers import condition, kubectl_apply, mlflow_client, version_artifact_location, wait_for

from .test_modeldeployment import (
    PredictLoop,
    log_iris_version,
    md_manifest,
    pods,
    served_versions,
    unique,
    wait_condition,
    wait_serving,
)
from .test_modeldeployment_safety import _children_fingerprint

pytestmark = [pytest.mark.integration, pytest.mark.mlflow_backend, pytest.mark.postgres_s3]


def test_postgres_outage_changes_nothing_and_recovers(postgres_s3: Any, namespace: str, operator: Any) -> None:
    cluster = postgres_s3
    model, name = unique("iris"), "iris-pg-outage"
    v1 = log_iris_version(cluster, model)
    mlflow_client(cluster).set_registered_model_alias(model, "champion", v1)
    kubectl_apply(cluster, namespace, md_manifest(name, {"name": model, "alias": "champion"}))
    wait_serving(cluster, namespace, name, v1)
    before = _children_fingerprint(cluster, namespace, name)
    with PredictLoop(cluster, namespace, name) as loop:
        cluster.postgres_stop()
        try:
            # MLflow itself still answers; its registry reads fail, and the operator says so.
            md = wait_condition(cluster, namespace, name, "ModelResolved", "False", "RegistryUnavailable", timeout=90)
            assert condition(md, "Ready")["status"] == "True"  # still serving v1
            time.sleep(3 * 3)  # a few poll intervals: nothing may change meanwhile
            assert _children_fingerprint(cluster, namespace, name) == before
        finally:
            cluster.postgres_start()
        wait_condition(cluster, namespace, name, "ModelResolved", "True", timeout=120)
        wait_condition(cluster, namespace, name, "Degraded", "False", timeout=120)
    assert loop.failures == [] and set(loop.ok) == {v1}
    assert served_versions(cluster, namespace, name) == {v1}


def test_s3_outage_keeps_serving_and_the_promoted_version_rolls_once_it_returns(
    postgres_s3: Any, namespace: str, operator: Any
) -> None:
    cluster = postgres_s3
    model, name = unique("iris"), "iris-s3-outage"
    mc = mlflow_client(cluster)
    v1, v2 = log_iris_version(cluster, model), log_iris_version(cluster, model)
    # Clients address artifacts through the server's proxy; the bytes are in the S3 bucket.
    assert version_artifact_location(mc, model, v2).startswith("mlflow-artifacts:/")
    assert list((cluster.state / "s3" / "root" / "mlflow" / "artifacts").rglob("MLmodel"))
    mc.set_registered_model_alias(model, "champion", v1)
    kubectl_apply(cluster, namespace, md_manifest(name, {"name": model, "alias": "champion"}))
    wait_serving(cluster, namespace, name, v1)
    try:
        with PredictLoop(cluster, namespace, name) as loop:
            cluster.s3_stop()
            # The registry (PostgreSQL) still works, so the operator resolves v2 at once; its
            # pod cannot fetch the model and stays unready while v1 keeps serving.
            mc.set_registered_model_alias(model, "champion", v2)
            md = wait_condition(cluster, namespace, name, "Degraded", "True", "ModelLoadFailed", timeout=180)
            assert condition(md, "Ready")["status"] == "True"
            assert md["status"]["servingVersion"] == v1
            assert served_versions(cluster, namespace, name) == {v1}
    finally:
        cluster.s3_start()
    assert loop.failures == [] and set(loop.ok) == {v1}
    # The serving pod retries its load (capped backoff); no one has to delete anything.
    wait_serving(cluster, namespace, name, v2)
    wait_condition(cluster, namespace, name, "Degraded", "False", timeout=180)
    for pod in pods(cluster, namespace, name):
        assert not [e.name for c in pod.spec.containers for e in c.env or [] if e.name.startswith("AWS_")]


def test_a_training_run_during_an_s3_outage_retries_and_succeeds(
    postgres_s3: Any, namespace: str, operator: Any
) -> None:
    """Uploading the model fails while S3 is away: MLflowUnavailable (exit 4) is retried per
    backoffLimit, and a retry after the store returns registers the version."""
    from .test_trainingrun import model_name, tr_manifest, wait_phase

    cluster = postgres_s3
    model = model_name(namespace, "s3-retry")
    cluster.s3_stop()
    try:
        kubectl_apply(cluster, namespace, tr_manifest("retry", model, backoffLimit=6))
        wait_for(lambda: _failed_attempts(cluster, namespace, "retry") >= 1, 300, 2, "a failed attempt")
    finally:
        cluster.s3_start()
    run = wait_phase(cluster, namespace, "retry", timeout=600)
    assert run["status"]["phase"] == "Succeeded", run["status"]
    assert mlflow_client(cluster).get_model_version(model, "1").run_id == run["status"]["runId"]


def _failed_attempts(cluster: Any, namespace: str, run: str) -> int:
    from kubernetes import client

    jobs = client.BatchV1Api(cluster.api).list_namespaced_job(
        namespace, label_selector=f"modelyard.io/trainingrun={run}").items
    return sum(job.status.failed or 0 for job in jobs)
