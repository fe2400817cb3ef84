"""TrainingRun bad input: rejected by the API server (CRD schema + CEL) with the field named,
or run and failed with the training's own reason."""

from __future__ import annotations

import copy
import time
from typing import Any

import pytest
from kubernetes import client

from tests.helpers import condition, kubectl_apply

from .test_trainingrun import (
    GROUP,
    PLURAL,
    VERSION,
    get_run,
    jobs_of,
    model_name,
    pods_of,
    tr_manifest,
    wait_phase,
)

pytestmark = pytest.mark.integration

SWEEP = {"trials": 2, "space": {"C": {"values": [0.1, 1.0]}}}
PROMOTION = {"alias": "champion", "metric": "accuracy", "minValue": 0.9}


def _with(path: str, value: Any) -> dict[str, Any]:
    manifest = tr_manifest("bad", "iris")
    node = manifest["spec"]
    *parents, leaf = path.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value
    return manifest


DVC = {"repo": "https://git.example.invalid/data.git", "path": "x.csv", "rev": "v1"}
INVALID = {
    "unknown estimator": (_with("estimator.type", "xgboost"), "spec.estimator.type"),
    "two dataset sources": (_with("dataset.uri", "http://example.invalid/x.csv"), "spec.dataset"),
    "uri without target": (_with("dataset", {"uri": "http://example.invalid/x.csv"}), "spec.dataset.target"),
    "trials 0": (_with("sweep", {**SWEEP, "trials": 0}), "spec.sweep.trials"),
    "gpu -1": (_with("resources", {"gpu": -1}), "spec.resources.gpu"),
    "alias with a space": (_with("promotion", {**PROMOTION, "alias": "my champion"}), "spec.promotion.alias"),
    "alias v1 reserved": (_with("promotion", {**PROMOTION, "alias": "v1"}), "spec.promotion.alias"),
    "alias latest reserved": (_with("promotion", {**PROMOTION, "alias": "latest"}), "spec.promotion.alias"),
    "promotion without threshold": (_with("promotion", {"alias": "champion", "metric": "accuracy"}),
                                    "spec.promotion"),
    "regression metric on a classifier": (_with("promotion", {**PROMOTION, "metric": "rmse"}),
                                          "spec.promotion.metric"),
    "testSize 1": (_with("dataset.testSize", 1), "spec.dataset.testSize"),
    "uri and dvc": (_with("dataset", {"uri": "s3://d/x.csv", "dvc": DVC, "target": "label"}), "spec.dataset"),
    "dvc without rev": (_with("dataset", {"dvc": {"repo": DVC["repo"], "path": "x.csv"}, "target": "label"}),
                        "spec.dataset.dvc.rev"),
    "s3 uri without a bucket": (_with("dataset", {"uri": "s3:///x.csv", "target": "label"}), "spec.dataset.uri"),
    "credentialsSecret on a built-in": (_with("dataset.credentialsSecret", "s3"),
                                        "spec.dataset.credentialsSecret"),
    "grid param with values and range": (_with("sweep", {**SWEEP, "space": {"C": {"values": [1], "min": 0.1,
                                                                                       "max": 1}}}),
                                         "spec.sweep.space.C"),
}


@pytest.mark.parametrize("case", list(INVALID), ids=list(INVALID))
def test_invalid_spec_rejected_at_apply_naming_the_field(cluster: Any, namespace: str, crds: Any, case: str) -> None:
    manifest, field = INVALID[case]
    result = kubectl_apply(cluster, namespace, manifest, check=False)
    assert result.returncode != 0, f"{case} was accepted"
    assert field in result.stderr, result.stderr
    assert not jobs_of(cluster, namespace, "bad")


def test_invalid_spec_rejected_by_api_create_with_422(cluster: Any, namespace: str, crds: Any) -> None:
    objects = client.CustomObjectsApi(cluster.api)
    with pytest.raises(client.ApiException) as error:
        objects.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL,
                                                _with("estimator.type", "xgboost"))
    assert error.value.status == 422
    assert "spec.estimator.type" in str(error.value.body)


def test_spec_change_rejected_as_immutable(cluster: Any, namespace: str, crds: Any) -> None:
    manifest = tr_manifest("frozen", model_name(namespace, "frozen"))
    kubectl_apply(cluster, namespace, manifest)
    changed = copy.deepcopy(manifest)
    changed["spec"]["estimator"]["hyperparameters"] = {"max_iter": 50}
    result = kubectl_apply(cluster, namespace, changed, check=False)
    assert result.returncode != 0
    assert "spec is immutable: create a new TrainingRun instead" in result.stderr
    # metadata stays editable
    cluster.kubectl("label", "trainingrun", "frozen", "-n", namespace, "team=ml")


def test_name_too_long_for_job_names_is_rejected(cluster: Any, namespace: str, crds: Any) -> None:
    manifest = tr_manifest("x" * 57, "iris")
    result = kubectl_apply(cluster, namespace, manifest, check=False)
    assert result.returncode != 0 and "metadata.name" in result.stderr, result.stderr


def test_invalid_hyperparameters_fail_in_one_attempt_with_sklearn_message(
    cluster: Any, namespace: str, operator: Any,
) -> None:
    manifest = tr_manifest("badhp", model_name(namespace, "badhp"),
                           estimator={"type": "logistic_regression", "hyperparameters": {"C": -1}})
    kubectl_apply(cluster, namespace, manifest)
    run = wait_phase(cluster, namespace, "badhp")
    failed = condition(run, "Failed")
    assert run["status"]["phase"] == "Failed"
    assert failed["status"] == "True"
    assert failed["reason"] == "InvalidHyperparameters"
    assert "'C' parameter of LogisticRegression" in failed["message"], failed["message"]
    (job,) = jobs_of(cluster, namespace, "badhp")
    assert job.status.failed == 1, "config errors must not burn retries"
    assert len(pods_of(cluster, namespace, "badhp")) == 1
    assert condition(run, "Succeeded")["status"] == "False"


def test_unreachable_dataset_uri_fails_with_reason(cluster: Any, namespace: str, operator: Any) -> None:
    # The pod's own loopback on a closed port: refused at once, and no traffic leaves the host.
    dataset = {"uri": "http://127.0.0.1:9/houses.csv", "target": "price"}
    kubectl_apply(cluster, namespace, tr_manifest("nodata", model_name(namespace, "nodata"), dataset=dataset))
    run = wait_phase(cluster, namespace, "nodata")
    failed = condition(run, "Failed")
    assert (run["status"]["phase"], failed["reason"]) == ("Failed", "DatasetUnavailable"), run["status"]
    assert "127.0.0.1:9" in failed["message"]
    assert len(pods_of(cluster, namespace, "nodata")) == 1


def test_mlflow_unreachable_retries_per_backoff_limit_then_fails(
    cluster: Any, namespace: str, operator: Any,
) -> None:
    # Pods get an MLflow address where nothing listens (their own loopback, closed port), via
    # the operator's POD_MLFLOW_TRACKING_URI setting. Same failure as a stopped server, without
    # taking the shared MLflow away from tests running beside this one.
    operator.stop()
    operator.start(MODELYARD_POD_MLFLOW_TRACKING_URI="http://127.0.0.1:9")
    try:
        # Keep MLflow's own client retries short so each attempt fails fast.
        env = [{"name": "MLFLOW_HTTP_REQUEST_MAX_RETRIES", "value": "0"},
               {"name": "MLFLOW_HTTP_REQUEST_TIMEOUT", "value": "5"}]
        kubectl_apply(cluster, namespace, tr_manifest("nomlflow", model_name(namespace, "nomlflow"),
                                                      backoffLimit=1, env=env))
        run = wait_phase(cluster, namespace, "nomlflow")
    finally:
        operator.stop()
        operator.start()
    failed = condition(run, "Failed")
    assert (run["status"]["phase"], failed["reason"]) == ("Failed", "MLflowUnavailable"), run["status"]
    (job,) = jobs_of(cluster, namespace, "nomlflow")
    assert job.status.failed == 2, "one try plus backoffLimit=1 retry"
    assert len(pods_of(cluster, namespace, "nomlflow")) == 2
    assert "after 2 attempts" in run["status"]["message"]
    env_vars = {e.name: e.value for e in job.spec.template.spec.containers[0].env}
    assert env_vars["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:9"


def test_status_not_rewritten_once_finished(cluster: Any, namespace: str, operator: Any) -> None:
    kubectl_apply(cluster, namespace, tr_manifest("quiet", model_name(namespace, "quiet"),
                                                  estimator={"type": "knn_classifier",
                                                             "hyperparameters": {"n_neighbors": 0}}))
    run = wait_phase(cluster, namespace, "quiet")
    version = run["metadata"]["resourceVersion"]
    time.sleep(12)  # past the Job and pod events that follow completion (finished runs are not polled)
    assert get_run(cluster, namespace, "quiet")["metadata"]["resourceVersion"] == version
